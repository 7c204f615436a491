"""PyTorch's fast decoding paths, step by step: the lean Transformer loop against Decoder.forward
(MKL GEMV and oneDNN-packed weights), reused weights, and the small-batch thread and oneDNN settings.
That every backend's greedy_decode gives the stepwise tokens is in test_decoding.py."""
import numpy as np
import pytest
import torch

from conformance.spec import ModelSpec
from tests.decoding_inputs import source
from impls.torch import fast_transformer, greedy_decode, make_model, recompute_greedy_decode, stepwise_greedy_decode


@pytest.mark.parametrize("batch", [1, fast_transformer.PACK_MIN_BATCH + 1], ids=["gemv", "packed"])
def test_lean_transformer_step_matches_decoder_forward(batch):
    """Teacher-forced, so float32 rounding differences cannot compound through different tokens."""
    spec = ModelSpec("transformer", num_hiddens=64, ffn_num_hiddens=128, tgt_vocab=50, dtype="float32")
    model = make_model(spec)
    src, valid = source(batch)
    tgt = torch.as_tensor(np.random.default_rng(1).integers(0, spec.tgt_vocab, size=(batch, 10)))
    with torch.inference_mode():
        src_t, valid_t = torch.as_tensor(src), torch.as_tensor(valid)
        memory = model.encoder(src_t, valid_t)
        state = model.decoder.init_state(memory, valid_t)
        lean = fast_transformer.TransformerGreedy(model.decoder, memory, valid_t, steps=tgt.shape[1])
        for t in range(tgt.shape[1]):
            expected, state = model.decoder(tgt[:, t : t + 1], state)
            torch.testing.assert_close(lean.step(tgt[:, t], t), expected[:, 0], atol=1e-5, rtol=1e-4)


def test_greedy_decode_leaves_the_model_alone():
    model = make_model(ModelSpec("transformer", dtype="float32"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    greedy_decode(model, *source(batch=3), bos=1, steps=5)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not model.training


def test_small_batch_settings_are_restored():
    """Small batches decode on one thread without oneDNN; the caller's settings come back."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        greedy_decode(make_model(ModelSpec("transformer")), *source(batch=1), bos=1, steps=3)
        recompute_greedy_decode(make_model(ModelSpec("lstm")), *source(batch=1), bos=1, steps=3)
        assert torch.get_num_threads() == 2 and torch.backends.mkldnn.enabled
    finally:
        torch.set_num_threads(before)


def test_lean_loop_sees_weights_changed_after_a_decode():
    """The rearranged weights are reused across calls, but never after a parameter changed."""
    model = make_model(ModelSpec("transformer"))
    src, valid = source(batch=3)
    before = greedy_decode(model, src, valid, bos=1, steps=8)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.copy_(torch.randn_like(p))
    after = greedy_decode(model, src, valid, bos=1, steps=8)
    np.testing.assert_array_equal(after, stepwise_greedy_decode(model, src, valid, bos=1, steps=8))
    assert not np.array_equal(after, before), "re-drawn weights should change the tokens"
