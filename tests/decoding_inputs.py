"""Inputs shared by the decoding tests: a small source batch with ragged valid lengths."""
import numpy as np


def source(batch, src_steps=7, vocab=23, seed=0):
    """(tokens (batch, src_steps), valid lengths (batch,)); the first example uses every position."""
    rng = np.random.default_rng(seed)
    valid = rng.integers(1, src_steps + 1, size=batch)
    valid[0] = src_steps
    return rng.integers(0, vocab, size=(batch, src_steps)), valid
