"""Inputs shared by the decoding tests: a small source batch with ragged valid lengths, of the family's
kind (conformance/sources.py): token ids, feature frames or images."""
import numpy as np

from conformance.sources import kind_of
from conformance.spec import ModelSpec


def source(batch, src_steps=7, vocab=23, seed=0, family="gru"):
    """(source, valid lengths (batch,) or None for images); the first example uses every position.
    Frames are 4 * src_steps - 1 wide, so the speech encoder keeps src_steps positions."""
    spec, kind = ModelSpec(family), kind_of(family)
    rng = np.random.default_rng(seed)
    if kind == "images":
        return rng.standard_normal((batch, spec.channels, spec.height, spec.width)), None
    steps = src_steps if kind == "tokens" else 4 * src_steps - 1
    valid = rng.integers(1, steps + 1, size=batch)
    valid[0] = steps
    if kind == "frames":
        return rng.standard_normal((batch, steps, spec.num_features)), valid
    return rng.integers(0, vocab, size=(batch, steps)), valid
