"""Clear failures: an out-of-vocabulary token id, or a source of the wrong size, raises instead of
returning numbers."""
import numpy as np
import pytest

from conformance.harness import ModelRaised
from conformance.inputs import CASES, random_batch


def with_token(batch, side, token, start=None):
    """`token` in the first example's first position, or its second after a declared start id."""
    tokens = getattr(batch, side).copy()
    tokens[0, 0 if side == "src" or start is None else 1] = token
    return batch.with_src(tokens) if side == "src" else batch.with_tgt(tokens)


def what_it_did_instead(model, batch, side, token, vocab, logits):
    """Name the silent substitute (some frameworks clip or wrap ids) by matching the logits it gave."""
    clipped = int(np.clip(token, 0, vocab - 1))
    start = model.vocab.start
    if np.array_equal(model.teacher_forced(with_token(batch, side, (clipped + 1) % vocab, start)), logits):
        return "ignored it (the logits do not depend on the id at that position)"
    for how, substitute in {"clipped it to": clipped, "wrapped it to": token % vocab}.items():
        if np.array_equal(model.teacher_forced(with_token(batch, side, substitute, start)), logits):
            return f"{how} {substitute}"
    return "used some row that is no token's (a zero or arbitrary embedding)"


def check_raises(model, check, rng, side, where):
    if side == "src":
        model.source.needs_tokens("no source id can be out of vocabulary (wrong_source_size_raises checks its size)")
    batch = random_batch(rng, model, CASES[1])
    vocab = model.vocab.size(side)
    token = vocab if where == "vocab_size" else -1
    try:  # a raise counts as refusing the id only where the same call with in-vocabulary ids works
        model.teacher_forced(batch)
    except ModelRaised as exc:
        check.fail(f"cannot tell whether {side} token id {token} is refused: the same call with in-vocabulary ids raises too: {exc}")
    try:
        logits = model.teacher_forced(with_token(batch, side, token, model.vocab.start))
    except ModelRaised:
        return
    did = what_it_did_instead(model, batch, side, token, vocab, logits)
    check.fail(f"{side} token id {token} ({side}_vocab={vocab}) gave logits instead of raising: the model silently {did}")


@pytest.mark.parametrize("where", ["vocab_size", "negative"])
def test_out_of_vocabulary_source_raises(model, check, rng, where):
    """A source token id outside [0, src_vocab) raises, where in-vocabulary ids give logits (a silent
    clip or zero row would hide data bugs; a model that raises on everything refuses nothing)."""
    check_raises(model, check, rng, "src", where)


@pytest.mark.parametrize("where", ["vocab_size", "negative"])
def test_out_of_vocabulary_target_raises(model, check, rng, where):
    """A target token id outside [0, tgt_vocab) raises, where in-vocabulary ids give logits."""
    check_raises(model, check, rng, "tgt", where)


@pytest.mark.parametrize("where", ["more", "fewer"])
def test_wrong_source_size_raises(model, check, rng, where):
    """Frames with one feature more or fewer than the spec's, or images with one channel more or fewer,
    raise, where the spec's size gives logits (a model that crops or pads what it is given hides a
    pipeline bug). An image's height and width are not checked: a CNN that pools takes any size."""
    batch = random_batch(rng, model, CASES[1])
    what, resized = model.source.resized(batch.src, where)
    try:
        model.teacher_forced(batch)
    except ModelRaised as exc:
        check.fail(f"cannot tell whether a source of {what} is refused: the same call with the spec's size raises too: {exc}")
    try:
        model.teacher_forced(batch.with_src(resized))
    except ModelRaised:
        return
    check.fail(f"a source of {what} gave logits instead of raising: the model silently read another size than the spec's")
