"""Shape and dtype invariants: logits (B, T, V); encoder outputs and state carry a batch axis, and
encoder outputs as many positions as declared."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conformance.inputs import CASES, Batch, random_batch
from conformance.sources import MAX_DRAWN_STEPS, NotApplicable
from conformance.state_helpers import batch_axes, floating_leaf_dtypes
from conformance.trees import array_leaves


@st.composite
def batches(draw, model):
    source = model.source
    batch = draw(st.integers(1, 5))
    src_steps = None if source.kind == "images" else source.fixed_steps or draw(st.integers(1, MAX_DRAWN_STEPS[source.kind]))
    tgt_steps = draw(st.integers(1, 5))

    def tokens(ids, steps):
        return hnp.arrays(np.int64, (batch, steps), elements=st.sampled_from(ids.tolist()))

    if source.kind == "tokens":
        src = draw(tokens(source.ids, src_steps))
    else:  # frames and images from a drawn seed: their values do not decide a shape
        src = source.values(np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed")), batch, src_steps)
    lengths = draw(hnp.arrays(np.int64, (batch,), elements=st.integers(1, src_steps))) if source.has_lengths else None
    return Batch(src=src, src_valid_len=lengths, tgt=model.vocab.started(draw(tokens(model.vocab.ordinary("tgt"), tgt_steps))))


@settings(max_examples=8, deadline=None, derandomize=True, database=None, report_multiple_bugs=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_logits_shape(model, check, data):
    """decoder(X (B, T), state) -> logits (B, T, tgt_vocab), for any B, source and target length."""
    batch = data.draw(batches(model), label="batch")
    logits = model.teacher_forced(batch)
    expected = (*batch.tgt.shape, model.vocab.tgt_size)
    if logits.shape != expected:
        check.fail(f"logits shape {logits.shape}, but should be (B, T, V)={expected}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logits_dtype_follows_spec(model_in, check, dtype, rng):
    """A model built for spec.dtype computes in it: logits and floating encoder/state leaves."""
    model = model_in(dtype)
    batch = random_batch(rng, model, CASES[1])
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
    batch = random_batch(rng, model, case)
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


def test_encoder_lengths_are_as_declared(model, check, rng):
    """A source of each of several lengths L, run alone and unpadded: every encoder output axis that
    follows L has the declared encoder length there (conformance.Declared(encoder_lengths=...); L
    itself unless declared). The padding contracts compare encoder outputs within these lengths."""
    source = model.source
    source.needs_lengths("it has no encoder lengths to declare")
    source.needs_any_width("running sources of several lengths unpadded")
    lengths = source.probe_lengths
    declared = source.encoder_lengths_of(lengths)
    shapes: dict[str, list[tuple]] = {}
    for length in lengths:
        tree = model.to_numpy(model.encode(source.values(rng, 1, int(length)), np.array([length])))
        for path, leaf in array_leaves(tree):
            shapes.setdefault(path, []).append(leaf.shape)
    followed, at_source_resolution = [], []
    for path, seen in shapes.items():
        if len({len(shape) for shape in seen}) != 1:
            check.fail(f"encoder output {path} changes its number of axes with the source length: {seen}")
        varying = [axis for axis in range(len(seen[0])) if len({shape[axis] for shape in seen}) > 1]
        if len(varying) > 1:
            check.fail(f"encoder output {path} has several axes that follow the source length: {seen}")
        if not varying:
            continue  # no time axis: a final state, a pooled summary
        got = np.array([shape[varying[0]] for shape in seen])
        if np.array_equal(got, declared):
            followed.append(path)
        elif np.array_equal(got, lengths):
            at_source_resolution.append(path)  # one entry per source step (its own mask, say)
        else:
            first = int(np.flatnonzero(got != declared)[0])
            check.fail(f"encoder output {path} has {got[first]} positions along axis {varying[0]} for a source of "
                       f"{lengths[first]} {source.step_name} run alone, unpadded, but {declared[first]} are declared "
                       f"(Declared(encoder_lengths=...); the source length itself unless declared); lengths "
                       f"{lengths.tolist()} give {got.tolist()}, declared {declared.tolist()}")
    if not followed and at_source_resolution:
        check.fail(f"encoder output(s) {', '.join(at_source_resolution)} follow the source length {lengths.tolist()}, but "
                   f"the declared encoder lengths are {declared.tolist()}: no output has them")
    if not followed:
        raise NotApplicable("no encoder output has an axis that follows the source length, so it has no lengths to declare")
