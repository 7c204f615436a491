"""PyTorch's fast decoding paths: the compiled Transformer graph (float32 on the CPU) and the eager
lean loop (other dtypes, and the compiled graph's fallback) against Decoder.forward, reused weights,
and the small-batch thread and oneDNN settings. That every backend's greedy_decode gives the stepwise
tokens in float64 is in test_decoding.py."""
import shutil

import numpy as np
import pytest
import torch

from conformance.spec import ModelSpec
from tests.decoding_inputs import assert_same_greedy_tokens, source, torch_logit_gap
from impls.torch import (compiled_transformer, decoding, fast_transformer, greedy_decode, make_model,
                         recompute_greedy_decode, stepwise_greedy_decode)

# One shape for every compiled decode below: each new shape compiles again (tens of seconds).
COMPILED_BATCH, COMPILED_STEPS = 3, 10


def compiled_status(batch, steps, model):
    graph = compiled_transformer.graph_for(model)
    dtype = str(graph.weights.tgt_positions.dtype).removeprefix("torch.")
    return compiled_transformer.GreedyGraph.status.get((batch, source(batch)[0].shape[1], steps, dtype, graph.size))


@pytest.mark.parametrize("batch, folded", [(COMPILED_BATCH, False), (1, True)], ids=["cross-attention", "folded"])
def test_compiled_transformer_gives_the_stepwise_tokens(batch, folded):
    """float32 on the CPU runs as one compiled graph (it must compile wherever a C++ compiler exists), and
    decodes the tokens of Decoder.forward step by step, up to float32 near-ties; at batch 1 with its
    cross-attention folded into the source (compiled_transformer.folds_cross_attention)."""
    model = make_model(ModelSpec("transformer", dtype="float32"))
    assert decoding.compiles(model)
    src, valid = source(batch)
    spec = model.decoder
    assert compiled_transformer.folds_cross_attention(batch, spec.num_heads, src.shape[1], spec.num_hiddens) is folded
    tokens = greedy_decode(model, src, valid, bos=1, steps=COMPILED_STEPS)
    status = compiled_status(batch, COMPILED_STEPS, model)
    if status.startswith("eager") and not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip(f"no C++ compiler for torch.compile: {status}")
    assert status.startswith("compiled"), status
    assert_same_greedy_tokens(tokens, stepwise_greedy_decode(model, src, valid, bos=1, steps=COMPILED_STEPS),
                              torch_logit_gap(model, src, valid, bos=1), "compiled greedy_decode vs stepwise")


def test_folded_cross_attention_is_the_cross_attention():
    """The fold computes CrossAttention(x) with the same products summed in another order: in float64
    the two agree to rounding, masked source positions included."""
    model = make_model(ModelSpec("transformer"))  # float64
    w = compiled_transformer.rearranged(model)
    src, valid = source(1)
    valid[0] = 4  # three masked source positions
    with torch.inference_mode():
        valid_t = torch.as_tensor(valid)
        memory = model.encoder(torch.as_tensor(src), valid_t).flatten(0, 1)
        key_bias = compiled_transformer._key_bias(valid_t, src.shape[1], memory.dtype)
        assert torch.isinf(key_bias).sum() == src.shape[1] - valid[0], "the masked positions the test is about"
        x = torch.randn(1, memory.shape[-1], dtype=memory.dtype, generator=torch.Generator().manual_seed(0))
        for b in w.decoder:
            k, v = compiled_transformer._cross_keys_values(b, memory, 1, w.heads)
            expected = compiled_transformer._cross_attention(b, k, v, key_bias)(x)
            torch.testing.assert_close(compiled_transformer._folded_cross_attention(b, k, v, key_bias)(x), expected,
                                       rtol=1e-12, atol=1e-12)


def test_compiled_transformer_falls_back_to_the_eager_loop_saying_why():
    """Where torch.compile cannot run (here: disabled), the lean eager loop decodes, and the status of
    the shape says so and why: a figure is never labelled compiled when it was not."""
    model = make_model(ModelSpec("transformer", dtype="float32"))
    src, valid = source(2)
    with torch._dynamo.config.patch(disable=True):
        tokens = greedy_decode(model, src, valid, bos=1, steps=4)
    assert compiled_status(2, 4, model) == "eager: torch.compile is disabled (TORCH_COMPILE_DISABLE)"
    assert_same_greedy_tokens(tokens, stepwise_greedy_decode(model, src, valid, bos=1, steps=4),
                              torch_logit_gap(model, src, valid, bos=1), "eager fallback vs stepwise")


def test_compiled_transformer_refuses_steps_beyond_the_positional_table():
    model = make_model(ModelSpec("transformer", dtype="float32", max_len=4))
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, *source(batch=1), bos=1, steps=5)


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
    greedy_decode(model, *source(COMPILED_BATCH), bos=1, steps=COMPILED_STEPS)
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


@pytest.mark.parametrize("dtype", ["float64", "float32"], ids=["eager", "compiled"])
def test_fast_loops_see_weights_changed_after_a_decode(dtype):
    """The rearranged weights are reused across calls, but never after a parameter changed in place or
    was replaced."""
    model = make_model(ModelSpec("transformer", dtype=dtype))
    src, valid = source(COMPILED_BATCH)
    before = greedy_decode(model, src, valid, bos=1, steps=COMPILED_STEPS)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.copy_(torch.randn_like(p))
    after = greedy_decode(model, src, valid, bos=1, steps=COMPILED_STEPS)
    assert_same_greedy_tokens(after, stepwise_greedy_decode(model, src, valid, bos=1, steps=COMPILED_STEPS),
                              torch_logit_gap(model, src, valid, bos=1), "after an in-place update")
    assert not np.array_equal(after, before), "re-drawn weights should change the tokens"
    model.decoder.dense.weight = torch.nn.Parameter(torch.randn_like(model.decoder.dense.weight))
    replaced = greedy_decode(model, src, valid, bos=1, steps=COMPILED_STEPS)
    assert_same_greedy_tokens(replaced, stepwise_greedy_decode(model, src, valid, bos=1, steps=COMPILED_STEPS),
                              torch_logit_gap(model, src, valid, bos=1), "after a replaced parameter")
    assert not np.array_equal(replaced, after), "a new output layer should change the tokens"
