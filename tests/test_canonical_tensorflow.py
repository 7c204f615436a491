"""Canonical weights (docs/weights.md) in and out of the TensorFlow references, and agreement with the
PyTorch references holding the same weights: the layout conversions (transposed kernels, Keras' GRU gate
order and (2, 3H) bias, one-bias LSTM/RNN cells, fused attention projections) are right only if the
two frameworks then compute the same logits and greedy tokens."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import impls.tensorflow  # noqa: E402
import impls.torch  # noqa: E402
from conformance import canonical  # noqa: E402
from conformance.assertions import relative_error  # noqa: E402
from conformance.bridges import as_adapter  # noqa: E402
from conformance.decoding import greedy_tokens  # noqa: E402
from conformance.sources import kind_of  # noqa: E402
from conformance.spec import FAMILIES, Declared, ModelSpec  # noqa: E402
from impls.tensorflow.canonical import export_canonical, load_canonical  # noqa: E402
from tests.conformance_run import family_params  # noqa: E402
from tests.decoding_inputs import source  # noqa: E402

ONE_BIAS = ("rnn", "lstm")  # Keras cells with one bias: bias_ih + bias_hh is what survives a round trip
BOS, STEPS = 1, 12


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """family -> (path of a safetensors file of random canonical weights, those weights)."""
    files = {}
    for family in FAMILIES:
        weights = canonical.random_weights(ModelSpec(family), seed=1)
        path = tmp_path_factory.mktemp("weights") / f"{family}.safetensors"
        canonical.save(path, weights)
        files[family] = str(path), weights
    return files


def batch(spec, seed=0):
    """Six sources, four of them padded, and 9 target steps: token sources of 7 steps (valid lengths 7,
    3, 5, 1, 7, 2); frames 27 wide with lengths of their own, images (tests/decoding_inputs.py)."""
    rng = np.random.default_rng(seed)
    if kind_of(spec.family) == "tokens":
        src, valid = rng.integers(0, spec.src_vocab, (6, 7)), np.array([7, 3, 5, 1, 7, 2])
    else:
        src, valid = source(batch=6, family=spec.family, seed=seed)
    return src, valid, rng.integers(0, spec.tgt_vocab, (6, 9))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("family", family_params("tensorflow"))
def test_export_of_load_gives_the_weights_back(family, dtype, weights_file):
    path, weights = weights_file[family]
    declared = impls.tensorflow.factory(ModelSpec(family, dtype=dtype, weights=path))
    assert isinstance(declared, Declared) and declared.canonical_weights
    exported = export_canonical(declared.model)
    assert sorted(exported) == sorted(weights)
    for name, value in weights.items():
        assert exported[name].dtype == np.dtype(dtype) and exported[name].shape == value.shape, name
        if family in ONE_BIAS and ".bias_" in name:
            continue
        np.testing.assert_array_equal(exported[name], value, err_msg=name)  # float32 values: exact in either dtype
    for name in (n for n in weights if family in ONE_BIAS and n.endswith(".bias_ih")):
        other = name.replace("bias_ih", "bias_hh")
        # The cell holds the sum, rounded once to its dtype; the export puts it all in bias_ih.
        total = (weights[name].astype(np.float64) + weights[other]).astype(dtype)
        np.testing.assert_array_equal(exported[name], total, err_msg=name)
        np.testing.assert_array_equal(exported[other], 0, err_msg=other)


def test_load_refuses_missing_and_unexpected_weights(weights_file):
    model = impls.tensorflow.make_model(ModelSpec("lstm"))
    before = [v.numpy().copy() for v in model.weights]
    _, weights = weights_file["lstm"]
    with pytest.raises(ValueError, match=r"no place for: \['decoder\.extra\.weight'\]"):
        load_canonical(model, weights | {"decoder.extra.weight": np.zeros(3)})
    with pytest.raises(ValueError, match=r"lack \['encoder\.rnn\.1\.bias_hh'\]"):
        load_canonical(model, {n: w for n, w in weights.items() if n != "encoder.rnn.1.bias_hh"})
    with pytest.raises(ValueError, match=r"encoder\.rnn\.0\.weight_ih'\] make a \(16, 32\) array; .* is \(16, 128\)"):
        load_canonical(model, canonical.random_weights(ModelSpec("rnn")))  # an LSTM has 4 gate blocks
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(model.weights, before)), "a refused load changed weights"


def test_load_and_export_refuse_a_variable_with_no_canonical_name(weights_file):
    from impls.tensorflow.d2l import EncoderDecoder
    from impls.tensorflow.recurrent import Seq2SeqDecoder, Seq2SeqEncoder

    class ScaledDecoder(Seq2SeqDecoder):
        def __init__(self, *args):
            super().__init__(*args)
            self.scale = self.add_weight(shape=(3,), name="scale")

    s = ModelSpec("lstm")
    model = EncoderDecoder(Seq2SeqEncoder("lstm", s.src_vocab, s.embed_size, s.num_hiddens, s.num_layers),
                           ScaledDecoder("lstm", s.tgt_vocab, s.embed_size, s.num_hiddens, s.num_layers))
    one = np.zeros((1, 1), np.int32)
    model(one, one, np.ones(1, np.int32))
    with pytest.raises(ValueError, match=r"no canonical weight maps to: \[.*scale'\]"):
        load_canonical(model, weights_file["lstm"][1])
    with pytest.raises(ValueError, match="no canonical weight maps to"):
        export_canonical(model)


# Bounds from the measured maxima (seed 1 weights, this batch; CPU, TF 2.21 / torch 2.13):
# float64 <= 1e-15 for every family (1e-8 for the transformer and mixed families while PyTorch's float64
# model rounded its positional table to float32);
# float32 <= 6e-7, a few float32 ulps through ~20 layers of arithmetic: 1e-5 leaves room for other BLAS.
BOUND = {"float64": 1e-12, "float32": 1e-5}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("family", family_params("tensorflow"))
def test_tensorflow_and_torch_agree_on_canonical_weights(family, dtype, weights_file):
    spec = ModelSpec(family, dtype=dtype, weights=weights_file[family][0])
    theirs, ours = impls.torch.factory(spec), impls.tensorflow.factory(spec)
    assert theirs.canonical_weights and ours.canonical_weights
    reference, adapter = as_adapter(theirs.model, spec), as_adapter(ours.model, spec)
    src, valid, tgt = batch(spec)
    expected = reference.forward(src, tgt, valid)
    error = relative_error(adapter.forward(src, tgt, valid), expected)[0]
    assert error < BOUND[dtype], f"{family}/{dtype}: teacher-forced logits differ by {error:.3e} (relative)"
    if dtype == "float64":  # float32 rounding may flip a near tie, and a flipped token changes all that follow
        tokens = greedy_tokens(reference, src, valid, BOS, STEPS)
        np.testing.assert_array_equal(greedy_tokens(adapter, src, valid, BOS, STEPS), tokens)
        np.testing.assert_array_equal(impls.tensorflow.greedy_decode(ours.model, src, valid, BOS, STEPS), tokens,
                                      err_msg="the XLA greedy loop")


def test_compiled_decoding_sees_weights_loaded_after_it_was_traced(weights_file):
    """load_canonical assigns the variables in place: a greedy loop XLA compiled before reads the new values."""
    path, weights = weights_file["transformer"]
    spec = ModelSpec("transformer", weights=path)
    model = impls.tensorflow.make_model(spec.replace(weights=None))
    src, valid, _ = batch(spec)
    before = impls.tensorflow.greedy_decode(model, src, valid, BOS, STEPS)
    load_canonical(model, canonical.load(path, spec))
    reference = impls.torch.make_model(spec)
    expected = greedy_tokens(as_adapter(reference, spec), src, valid, BOS, STEPS)
    assert not np.array_equal(before, expected), "the model's own weights already give these tokens: no evidence"
    np.testing.assert_array_equal(impls.tensorflow.greedy_decode(model, src, valid, BOS, STEPS), expected)
