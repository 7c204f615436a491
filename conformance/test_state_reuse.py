"""State reuse: a state is a value. Decoding from it leaves it intact; beam search may reorder it."""
import dataclasses

import numpy as np
import pytest

from conformance.inputs import CASES, random_batch
from conformance.state_helpers import batch_axes, take_along_batch


def batch_with_prefix(model, rng, case):
    """A batch whose target splits (`prefix_and_rest`) into a prefix and a rest of one step or more.

    The state is taken after the prefix: a state that has not decoded a single step yet holds no
    cache, and a cache updated in place could not show. A one-step target gets one step in front.
    """
    return random_batch(rng, model, dataclasses.replace(case, tgt_steps=max(case.tgt_steps, 2)))


def prefix_and_rest(batch):
    split = batch.tgt.shape[1] // 2
    return batch.with_tgt(batch.tgt[:, :split]), batch.with_tgt(batch.tgt[:, split:])


def state_after(model, batch, prefix):
    return model.decode(prefix.tgt, model.initial_state(batch))[1]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_decode_twice_from_same_state(model, check, rng, case):
    """decoder(X, s) called twice on the same state s gives the same logits and next state, bit for bit."""
    batch = batch_with_prefix(model, rng, case)
    prefix, rest = prefix_and_rest(batch)
    state = state_after(model, batch, prefix)
    first_logits, first_state = model.decode_on(rest.tgt, state)
    second_logits, second_state = model.decode_on(rest.tgt, state)
    check.identical(second_logits, first_logits, "logits of the second decode from the same state")
    check.trees_identical(model.to_numpy(second_state), model.to_numpy(first_state), "state returned by the second decode")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_decode_does_not_mutate_state(model, check, rng, case):
    """Every leaf of the state passed to decoder(X, state) is bit for bit the same afterwards."""
    batch = batch_with_prefix(model, rng, case)
    prefix, rest = prefix_and_rest(batch)
    state = state_after(model, batch, prefix)
    before = model.to_numpy(state)
    model.decode_on(rest.tgt, state)
    check.trees_identical(model.to_numpy(state), before, "state after being decoded from")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_reordered_state_decodes_reordered_examples(model, check, rng, case):
    """Decoding on from a state reordered along its batch axis (with repeats, as beam search does)
    == decoding on from the state as it was, the logits reordered the same way.

    Both sides decode on from the same state, so only the reordering is compared: a model that
    decodes on wrongly does so on both sides (the autoregressive contracts catch that)."""
    batch = batch_with_prefix(model, rng, case)
    prefix, rest = prefix_and_rest(batch)
    state = model.to_numpy(state_after(model, batch, prefix))
    # Locate each leaf's batch axis from the same state built with one more example.
    grown = batch.take(list(range(case.batch)) + [0])
    axes, problems = batch_axes(state, model.to_numpy(state_after(model, grown, prefix_and_rest(grown)[0])), case.batch, case.batch + 1)
    if problems:
        check.fail("cannot reorder a state without a batch axis: " + "; ".join(problems))
    order = np.concatenate([rng.permutation(case.batch), [case.batch - 1]])  # a permutation plus a repeat
    logits, _ = model.decode_on(rest.take(order).tgt, model.from_numpy(take_along_batch(state, axes, order)))
    expected = model.decode_on(rest.tgt, model.from_numpy(state))[0][order]
    check.close(logits, expected, f"decoding on from the state reordered by {order.tolist()} vs from the state as it was, reordered")
