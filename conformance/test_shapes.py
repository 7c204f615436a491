"""Shape and dtype invariants: logits (B, T, V); encoder outputs and state carry a batch axis."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conformance.inputs import CASES, Batch, random_batch
from conformance.state_helpers import batch_axes, floating_leaf_dtypes


@st.composite
def batches(draw, vocab):
    batch, src_steps, tgt_steps = draw(st.integers(1, 5)), draw(st.integers(1, 7)), draw(st.integers(1, 5))

    def tokens(side, steps):
        return hnp.arrays(np.int64, (batch, steps), elements=st.sampled_from(vocab.ordinary(side).tolist()))

    return Batch(
        src=draw(tokens("src", src_steps)),
        src_valid_len=draw(hnp.arrays(np.int64, (batch,), elements=st.integers(1, src_steps))),
        tgt=vocab.started(draw(tokens("tgt", tgt_steps))),
    )


@settings(max_examples=8, deadline=None, derandomize=True, database=None, report_multiple_bugs=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_logits_shape(model, check, data):
    """decoder(X (B, T), state) -> logits (B, T, tgt_vocab), for any B, source and target length."""
    batch = data.draw(batches(model.vocab), label="batch")
    logits = model.teacher_forced(batch)
    expected = (*batch.tgt.shape, model.vocab.tgt_size)
    if logits.shape != expected:
        check.fail(f"logits shape {logits.shape}, but should be (B, T, V)={expected}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logits_dtype_follows_spec(model_in, check, dtype, rng):
    """A model built for spec.dtype computes in it: logits and floating encoder/state leaves."""
    model = model_in(dtype)
    batch = random_batch(rng, model.vocab, CASES[1])
    enc = model.encode(batch.src, batch.src_valid_len)
    state = model.init_state(enc, batch.src_valid_len)
    logits, state = model.decode(batch.tgt, state)
    found = {"logits": str(logits.dtype)}
    found.update({f"encoder output {p}": d for p, d in floating_leaf_dtypes(model.to_numpy(enc)).items()})
    found.update({f"state {p}": d for p, d in floating_leaf_dtypes(model.to_numpy(state)).items()})
    wrong = {what: d for what, d in found.items() if d != dtype}
    if wrong:
        check.fail(f"spec.dtype={dtype}, but {wrong}")


def two_batch_sizes(model, rng, case, make_tree):
    """The tree `make_tree(batch)` builds for B and for B + 2 examples (same lengths), as numpy."""
    batch = random_batch(rng, model.vocab, case)
    larger = batch.take(list(range(case.batch)) + [0, case.batch - 1])
    return model.to_numpy(make_tree(batch)), model.to_numpy(make_tree(larger)), case.batch, case.batch + 2


@pytest.mark.parametrize("case", CASES, ids=str)
def test_encoder_outputs_have_batch_axis(model, check, rng, case):
    """Every array leaf of encoder(X, valid_lens) has one axis whose length follows B."""
    tree_a, tree_b, b_a, b_b = two_batch_sizes(model, rng, case, lambda b: model.encode(b.src, b.src_valid_len))
    _, problems = batch_axes(tree_a, tree_b, b_a, b_b)
    if problems:
        check.fail("encoder outputs without a batch axis: " + "; ".join(problems))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_state_leaves_have_batch_axis(model, check, rng, case):
    """Every array leaf of the state, after init_state and after decoding T steps, has a batch
    axis that follows B, and it stays the same axis while decoding (beam search relies on it)."""
    def init(b):
        return model.initial_state(b)

    def after_decoding(b):
        return model.decode(b.tgt, model.initial_state(b))[1]

    axes_per_stage = {}
    for stage, make in (("init_state", init), (f"{case.tgt_steps} decoded steps", after_decoding)):
        axes, problems = batch_axes(*two_batch_sizes(model, rng, case, make))
        if problems:
            check.fail(f"state after {stage}: " + "; ".join(problems))
        axes_per_stage[stage] = axes
    (first, a), (second, b) = axes_per_stage.items()
    moved = {p: (a[p], b[p]) for p in a.keys() & b.keys() if a[p] != b[p]}
    if moved:
        check.fail(f"batch axis moved between {first} and {second}: {moved}")
