"""Cross-framework agreement: built from the same canonical weights (docs/weights.md), every
implementation computes what the reference computes — by default the NumPy specification.

Implementations that do not load canonical weights are skipped, saying so. The report's difference
matrix gives the measured difference of every pair of implementations, not only pass or fail.
"""
import pytest

from conformance.golden import GREEDY_STEPS
from conformance.inputs import CASES, random_batch


@pytest.mark.parametrize("case", CASES, ids=str)
def test_logits_match_reference(canonical_pair, agree, shared_rng, record_logits, case):
    """Teacher-forced logits == the reference's on the same weights and inputs, within the tolerance
    of the implementation's precision (conformance/tolerances.py: AGREE)."""
    model, reference = canonical_pair
    batch = random_batch(shared_rng, model, case)
    logits, expected = model.teacher_forced(batch), reference.teacher_forced(batch)
    record_logits(model, logits)
    record_logits(reference, expected)
    agree.close(logits, expected, f"{model.impl_name} vs {reference.impl_name} ({reference.dtype}), teacher-forced")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_greedy_tokens_match_reference(canonical_pair, agree, shared_rng, case):
    """Greedy tokens == the reference's, step for step. Where they part, the reference's two best
    logits must be closer than the tolerance: a tie, which either side may break its own way."""
    model, reference = canonical_pair
    batch = random_batch(shared_rng, model, case)
    steps = case.tgt_steps + 3
    tokens, _ = model.greedy(batch, steps)
    expected, reference_logits = reference.greedy(batch, steps)
    agree.same_tokens_unless_tied(tokens, expected, reference_logits, f"{model.impl_name} vs {reference.impl_name}")


def test_golden_vectors(golden_pair, agree):
    """Built from the committed golden weights of its family, teacher-forced logits and greedy tokens
    == the vectors the specification computed from them (conformance/golden/, conformance/golden.py)."""
    model, vectors = golden_pair
    agree.close(model.teacher_forced(vectors.batch), vectors.logits, f"{model.impl_name} vs the golden logits")
    tokens, _ = model.greedy(vectors.batch, GREEDY_STEPS)
    agree.same_tokens_unless_tied(tokens, vectors.tokens, list(vectors.step_logits), f"{model.impl_name} vs the golden tokens")
