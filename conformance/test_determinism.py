"""Determinism: in evaluation mode the same call gives the same numbers (dropout is off)."""
import pytest

from conformance.inputs import CASES, random_batch


@pytest.mark.parametrize("case", CASES, ids=str)
def test_eval_calls_agree_exactly(model, check, rng, case):
    """Two identical calls of EncoderDecoder.forward, and of stepwise decoding, agree bit for bit."""
    batch = random_batch(rng, model.vocab, case)
    check.identical(model.forward(batch), model.forward(batch), "second forward call")
    check.identical(model.chunked(batch, 1)[0], model.chunked(batch, 1)[0], "second stepwise decode")
