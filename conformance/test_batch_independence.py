"""Batch independence: an example's logits do not depend on the other examples of its batch."""
import pytest

from conformance.inputs import BATCHED, random_batch


@pytest.mark.parametrize("case", BATCHED, ids=str)
def test_example_alone_equals_example_in_batch(model, check, rng, case):
    """teacher_forced(batch)[i] == teacher_forced(batch[i:i+1])[0] for every i."""
    batch = random_batch(rng, model, case)
    together = model.teacher_forced(batch)
    for i in range(case.batch):
        alone = model.teacher_forced(batch.take([i]))
        check.close(together[i : i + 1], alone, f"example {i} in a batch of {case.batch} vs alone")
