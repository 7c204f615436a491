"""TensorFlow's fast decoding paths: the preallocated-cache step of the XLA loop against Decoder.call,
one trace per shape, out-of-range inputs, and images without lengths. That greedy_decode gives the
stepwise tokens for every family, speech and captioning included, is in test_decoding.py."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from conformance.spec import ModelSpec  # noqa: E402
from tests.decoding_inputs import source  # noqa: E402
from impls.tensorflow import decoding, greedy_decode, make_model  # noqa: E402


def test_preallocated_cache_step_matches_decoder_call():
    """Teacher-forced, so float32 rounding differences cannot compound through different tokens."""
    spec = ModelSpec("transformer", num_hiddens=64, ffn_num_hiddens=128, tgt_vocab=50, dtype="float32")
    model = make_model(spec)
    src, valid = source(batch=3)
    tgt = np.random.default_rng(1).integers(0, spec.tgt_vocab, size=(3, 10)).astype(np.int32)
    src, valid = tf.constant(src), tf.constant(valid)
    state = model.decoder.init_state(model.encoder(src, valid), valid)
    start, step = decoding.STEPPERS[type(model.decoder)]
    carry = start(model.decoder, state, tgt.shape[1])
    for t in range(tgt.shape[1]):
        expected, state = model.decoder(tgt[:, t : t + 1], state)
        logits, carry = step(model.decoder, tf.constant(tgt[:, t]), tf.constant(t), carry)
        np.testing.assert_allclose(logits, expected[:, 0], atol=1e-5, rtol=1e-4)


def test_one_trace_per_shape():
    """The benchmarks warm up once per shape; a later call at that shape must not trace or compile again."""
    model = make_model(ModelSpec("gru", dtype="float32"))
    greedy_decode(model, *source(batch=2), bos=1, steps=3)
    traced = decoding._compiled(model).greedy.experimental_get_tracing_count()
    greedy_decode(model, *source(batch=2, seed=1), bos=2, steps=3)  # new values, same shapes
    assert decoding._compiled(model).greedy.experimental_get_tracing_count() == traced


def test_out_of_range_source_ids_raise():
    """XLA compiles the Embedding's own range checks away."""
    model = make_model(ModelSpec("rnn", dtype="float32"))
    src, valid = source(batch=2)
    src[1, 0] = 23
    with pytest.raises(tf.errors.InvalidArgumentError):
        greedy_decode(model, src, valid, bos=1, steps=2)


def test_steps_beyond_the_positional_table_raise():
    """An XLA gather clamps an out-of-range position where the d2l path fails: refuse before compiling."""
    model = make_model(ModelSpec("transformer", dtype="float32", max_len=4))
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, *source(batch=1), bos=1, steps=5)


def test_compiled_encoder_takes_images_without_lengths():
    """Images have no valid lengths (conformance/sources.py): the XLA encoder is traced without them and
    gives the eager encoder's grid."""
    spec = ModelSpec("captioning")
    model = make_model(spec)
    images, valid = source(batch=2, family="captioning")
    assert valid is None
    grid = decoding.encode(model, images, None)
    assert grid.shape == (2, 4, spec.num_hiddens)  # 16x16 images, two stride-2 blocks and a 2x2 pool: a 2x2 grid
    np.testing.assert_allclose(grid, model.encoder(tf.constant(images)), rtol=1e-13, atol=1e-15)
