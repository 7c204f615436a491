"""Clear failures: an out-of-vocabulary token id raises instead of returning numbers."""
import pytest

from conformance.harness import ModelRaised
from conformance.inputs import CASES, random_batch


def raises(check, model, batch, what):
    try:
        model.teacher_forced(batch)
    except ModelRaised:
        return
    check.fail(f"{what} gave logits instead of raising an error")


@pytest.mark.parametrize("where", ["vocab_size", "negative"])
def test_out_of_vocabulary_source_raises(model, check, rng, where):
    """A source token id outside [0, src_vocab) raises (a silent clip or zero row would hide data bugs)."""
    batch = random_batch(rng, model.spec, CASES[1])
    token = model.spec.src_vocab if where == "vocab_size" else -1
    src = batch.src.copy()
    src[0, 0] = token
    raises(check, model, batch.with_src(src), f"source token id {token} (src_vocab={model.spec.src_vocab})")


@pytest.mark.parametrize("where", ["vocab_size", "negative"])
def test_out_of_vocabulary_target_raises(model, check, rng, where):
    """A target token id outside [0, tgt_vocab) raises."""
    batch = random_batch(rng, model.spec, CASES[1])
    token = model.spec.tgt_vocab if where == "vocab_size" else -1
    tgt = batch.tgt.copy()
    tgt[0, 0] = token
    raises(check, model, batch.with_tgt(tgt), f"target token id {token} (tgt_vocab={model.spec.tgt_vocab})")
