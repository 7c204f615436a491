"""Padding invariance: nothing past a source's valid length reaches the encoder's valid positions or
the decoder. Encoder outputs are compared within each example's declared encoder length (an encoder
may subsample the time axis), logits whole."""
import numpy as np
import pytest

from conformance.encoder_outputs import agree_within_lengths
from conformance.inputs import CASES, PADDED, random_batch

DECODER_READS_PAST = "; the encoder outputs agree within their declared lengths, so the decoder reads past them"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_extra_padding_changes_nothing(model, check, rng, case):
    """Appending steps of anything to the source (3 token columns; frames up to a width that is a
    multiple of 8, from one that is odd; valid lengths unchanged) changes no encoder output within its
    declared length and no logit."""
    source = model.source
    source.needs_lengths("there is no padding to add")
    source.needs_any_width("extra padding")
    batch = random_batch(rng, model, case)
    width = batch.src.shape[1]
    extra = source.padding_steps(width)
    padded = batch.with_src(source.padded(rng, batch.src, extra))
    wider = padded if extra == source.extra_steps(width) else batch.with_src(
        source.padded(np.random.default_rng(0), batch.src, source.extra_steps(width)))
    what = f"{extra} extra padding {source.step_name}"
    encoder_agrees = agree_within_lengths(model, check, batch, padded, wider, f"with {what}")
    check.close(model.teacher_forced(padded), model.teacher_forced(batch),
                f"logits with {what} vs without{DECODER_READS_PAST if encoder_agrees else ''}")


@pytest.mark.parametrize("case", PADDED, ids=str)
def test_garbage_beyond_valid_length_changes_nothing(model, check, rng, case):
    """Replacing everything beyond each example's valid length changes no encoder output within its
    declared length and no logit."""
    source = model.source
    source.needs_lengths("nothing lies beyond one")
    batch = random_batch(rng, model, case, full_first=False)
    width = batch.src.shape[1]
    lens = np.minimum(batch.src_valid_len, width - 1)  # leave every example something to replace
    batch = batch.with_src(batch.src, lens)
    spoiled = batch.with_src(source.spoiled_beyond(rng, batch.src, lens))
    wider = batch.with_src(source.padded(np.random.default_rng(0), batch.src, source.extra_steps(width)))
    what = f"other {source.step_name} beyond the valid lengths"
    encoder_agrees = agree_within_lengths(model, check, batch, spoiled, wider, f"with {what}")
    check.close(model.teacher_forced(spoiled), model.teacher_forced(batch),
                f"logits with {what}{DECODER_READS_PAST if encoder_agrees else ''}")
