"""Causality: what the decoder emits at step s never depends on target tokens after s."""
import numpy as np
import pytest

from conformance.finite_differences import wrong_gradients
from conformance.findings import GRADIENTS_WRONG
from conformance.harness import ContractFailure
from conformance.inputs import MULTI_STEP, other_tokens, random_batch


def future_changed(rng, batch, t, vocab):
    """The batch with every target token from position t on replaced by another."""
    tgt = batch.tgt.copy()
    tgt[:, t:] = other_tokens(rng, tgt[:, t:], vocab, "tgt")
    return batch.with_tgt(tgt)


@pytest.mark.parametrize("case", MULTI_STEP, ids=str)
def test_future_tokens_do_not_change_past_logits(model, check, rng, case):
    """For every t: logits[:, :t] are the same whatever the tokens at t, t+1, ... are."""
    batch = random_batch(rng, model, case)
    reference = model.teacher_forced(batch)
    for t in range(1, case.tgt_steps):
        changed = model.teacher_forced(future_changed(rng, batch, t, model.vocab))
        check.close(changed[:, :t], reference[:, :t], f"logits before step {t} after changing tokens from step {t} on")


@pytest.mark.parametrize("case", MULTI_STEP, ids=str)
def test_future_tokens_do_not_change_past_gradients(model, check, rng, case):
    """The gradient of any function of logits[:, :t] w.r.t. every parameter ignores tokens at >= t.
    Where they differ and finite differences show the gradients wrong in themselves, it cannot judge."""
    batch = random_batch(rng, model, case)
    t = case.tgt_steps // 2
    cotangent = np.zeros((*batch.tgt.shape, model.vocab.tgt_size))
    cotangent[:, :t] = rng.standard_normal(cotangent[:, :t].shape)
    reference = model.gradients(batch, cotangent)
    changed = model.gradients(future_changed(rng, batch, t, model.vocab), cotangent)
    try:
        for part, grads in reference.items():
            for name, g in grads.items():
                check.close(changed[part][name], g, f"gradient of logits[:, :{t}] w.r.t. {part} {name}", ())
    except ContractFailure:
        # Gradients that are wrong in themselves (a fused kernel's backward) differ here too: say that first.
        wrong = wrong_gradients(model, batch, cotangent, reference, rng)
        if wrong:
            check.cannot_judge(wrong, GRADIENTS_WRONG)
        raise


@pytest.mark.parametrize("case", MULTI_STEP, ids=str)
def test_changed_token_changes_its_own_logits(model, check, rng, case):
    """The other side of causality: changing the token at t changes logits at t (the input is used).
    A declared start id is not changed: every decode begins with it."""
    batch = random_batch(rng, model, case)
    reference = model.teacher_forced(batch)
    for t in range(0 if model.vocab.start is None else 1, case.tgt_steps):
        changed = model.teacher_forced(future_changed(rng, batch, t, model.vocab))
        check.differ(changed[:, t], reference[:, t], f"logits at step {t} after changing the token at step {t}")
