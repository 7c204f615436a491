"""Autoregressive consistency: decoding piece by piece with the returned state equals one pass."""
import pytest

from conformance.inputs import CASES, random_batch


@pytest.mark.parametrize("case", CASES, ids=str)
def test_stepwise_equals_teacher_forced(model, check, rng, case):
    """Feeding the target one token per call, threading the returned state, == one call on all T tokens."""
    batch = random_batch(rng, model, case)
    check.close(model.chunked(batch, 1)[0], model.teacher_forced(batch), "one token per call vs one pass")


@pytest.mark.parametrize("chunk", [2, 3])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_chunked_equals_teacher_forced(model, check, rng, case, chunk):
    """Feeding the target `chunk` tokens per call (a cache then holds earlier chunks) == one pass."""
    batch = random_batch(rng, model, case)
    check.close(model.chunked(batch, chunk)[0], model.teacher_forced(batch), f"{chunk} tokens per call vs one pass")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_greedy_cached_equals_recomputed(model, check, rng, case):
    """Greedy decoding through the state == greedy decoding that recomputes the whole prefix each step.

    Both sides see the same prefix (the one the cached decode chose), so the comparison is of
    logits, step by step, and a near-tie in argmax cannot masquerade as a bug.
    """
    batch = random_batch(rng, model, case)
    steps = case.tgt_steps + 3
    tokens, cached = model.greedy(batch, steps)
    for n in range(1, steps + 1):
        recomputed = model.teacher_forced(batch.with_tgt(tokens[:, :n]))[:, -1]
        check.close(cached[n - 1], recomputed, f"greedy step {n}: cached vs recomputed prefix", ("batch", "token"))
