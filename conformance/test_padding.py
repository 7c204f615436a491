"""Padding invariance: nothing past a source's valid length reaches the decoder."""
import numpy as np
import pytest

from conformance.inputs import CASES, PADDED, random_batch


@pytest.mark.parametrize("case", CASES, ids=str)
def test_extra_padding_changes_nothing(model, check, rng, case):
    """Appending columns of arbitrary tokens to the source (valid lengths unchanged) changes no logit."""
    batch = random_batch(rng, model.vocab, case)
    extra = rng.integers(0, model.vocab.src_size, size=(case.batch, 3))
    padded = batch.with_src(np.concatenate([batch.src, extra], axis=1))
    check.close(model.teacher_forced(padded), model.teacher_forced(batch), "logits with 3 extra padding columns vs without")


@pytest.mark.parametrize("case", PADDED, ids=str)
def test_garbage_beyond_valid_length_changes_nothing(model, check, rng, case):
    """Replacing every token beyond each example's valid length changes no logit."""
    batch = random_batch(rng, model.vocab, case, full_first=False)
    lens = np.minimum(batch.src_valid_len, case.src_steps - 1)  # leave every example something to replace
    batch = batch.with_src(batch.src, lens)
    beyond = np.arange(case.src_steps)[None, :] >= lens[:, None]
    garbage = np.where(beyond, rng.integers(0, model.vocab.src_size, size=batch.src.shape), batch.src)
    check.close(model.teacher_forced(batch.with_src(garbage)), model.teacher_forced(batch), "logits with other tokens beyond the valid lengths")
