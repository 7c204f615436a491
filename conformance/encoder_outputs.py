"""Encoder outputs within the declared encoder lengths: what the padding contracts compare besides logits.

An encoder output leaf has a batch axis and, often, a time axis: one position per source step, or
fewer after a subsampling (conformance.Declared(encoder_lengths=...)). Positions past an example's
declared encoder length are computed from padding and may hold anything; those within must not
depend on it. The axes are found, not assumed: the batch axis is the one that follows the batch
size, the time axis the one that follows the source's width.
"""
from __future__ import annotations

import numpy as np

from .inputs import Batch
from .state_helpers import batch_axes
from .trees import array_leaves

Layout = dict[str, tuple[int, int | None]]  # leaf path -> (batch axis, time axis or None)


def encoded(model, batch: Batch):
    return model.to_numpy(model.encode(batch.src, batch.src_valid_len))


def layout(model, batch: Batch, base, widened) -> Layout | None:
    """Each leaf's batch and time axes, from `base` (the outputs for `batch`), those for one example
    more, and `widened` (the outputs for the same examples with a wider source). None where no
    batch axis can be told (the shape contracts say why): then only logits are compared."""
    size = len(batch.src)
    axes, problems = batch_axes(base, encoded(model, batch.take(list(range(size)) + [0])), size, size + 1)
    if problems:
        return None
    found = {}
    for (path, a), (_, b) in zip(array_leaves(base), array_leaves(widened)):
        if path not in axes or a.ndim != b.ndim:
            continue
        changed = [axis for axis in range(a.ndim) if a.shape[axis] != b.shape[axis] and axis != axes[path]]
        if len(changed) <= 1:  # a leaf with no time axis (a final state) is compared whole
            found[path] = (axes[path], changed[0] if changed else None)
    return found


def within(tree, found: Layout, lengths: np.ndarray) -> dict[tuple[str, int], np.ndarray] | None:
    """{(leaf path, example): the example's slice of the leaf, its time axis cut at its length}; None if
    a declared length is longer than the time axis (a declaration encoder_lengths_are_as_declared refutes)."""
    rows = {}
    for path, a in array_leaves(tree):
        if path not in found:
            continue
        batch_axis, time_axis = found[path]
        if time_axis is not None and np.max(lengths) > a.shape[time_axis]:
            return None
        for row, length in enumerate(lengths):
            x = np.take(a, row, axis=batch_axis)
            if time_axis is not None:
                x = np.take(x, np.arange(length), axis=time_axis - (time_axis > batch_axis))
            rows[(path, row)] = x
    return rows


def agree_within_lengths(model, check, batch: Batch, changed: Batch, wider: Batch, what: str) -> bool:
    """The encoder outputs of `changed` == those of `batch` within every example's declared encoder
    length (`wider`, the batch with a wider source, shows the time axis). False where they could not
    be compared (no batch axis; a model of one width only; declared lengths longer than the outputs),
    True where they agree."""
    if model.source.fixed_steps:
        return False
    base = encoded(model, batch)
    widened = encoded(model, wider)
    found = layout(model, batch, base, widened)
    if found is None:
        return False
    other = widened if wider is changed else encoded(model, changed)
    lengths = model.source.encoder_lengths_of(batch.src_valid_len)
    expected, actual = within(base, found, lengths), within(other, found, lengths)
    if expected is None or actual is None:
        return False
    for (path, row), value in expected.items():
        if found[path][1] is None:  # a final state: its value sums up the source, padding included if read
            where = f"encoder output {path} of example {row}, a leaf with no time axis (a final state), compared whole ({what})"
        else:
            where = (f"encoder output {path} of example {row} within its declared encoder length {lengths[row]} ({what}; "
                     "Declared(encoder_lengths=...) if the encoder changes the time axis)")
        check.close(actual[(path, row)], value, where, ())
    return True
