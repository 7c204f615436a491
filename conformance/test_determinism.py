"""Determinism: in evaluation mode the same call gives the same numbers (dropout is off), and leaves
the model as it found it (no running statistics updated)."""
import pytest

from conformance.inputs import CASES, random_batch


@pytest.mark.parametrize("case", CASES, ids=str)
def test_eval_calls_agree_exactly(model, check, rng, case):
    """Two identical calls of EncoderDecoder.forward, and of stepwise decoding, agree bit for bit."""
    batch = random_batch(rng, model, case)
    check.identical(model.forward(batch), model.forward(batch), "second forward call")
    check.identical(model.chunked(batch, 1)[0], model.chunked(batch, 1)[0], "second stepwise decode")


def test_eval_calls_leave_model_unchanged(model, check, rng):
    """EncoderDecoder.forward and stepwise decoding (encoder, init_state, decoder) leave every trainable
    parameter and every buffer (BatchNorm running statistics, counters, frozen tables) bit for bit as
    they were: evaluation updates nothing."""
    before = {"parameters": model.get_weights(), "buffers": model.get_buffers()}
    batch = random_batch(rng, model, CASES[1])
    model.forward(batch)
    model.chunked(batch, 1)
    after = {"parameters": model.get_weights(), "buffers": model.get_buffers()}
    check.trees_identical(after, before, "the model after evaluation-mode calls")
