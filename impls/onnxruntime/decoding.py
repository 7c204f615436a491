"""Greedy decoding entry points for the benchmarks (benchmarks/backends.py), on an `OnnxSeq2Seq`:
the encoder, init_state and decoder graphs called from a numpy loop, one decoder run per token.
Sources are token ids, frames or images (conformance/sources.py): images have no valid lengths (None)."""
from __future__ import annotations

import numpy as np

from conformance.decoding import lengths


def encode(model, src, src_valid_len):
    return model.encode(np.asarray(src), lengths(src_valid_len))


def greedy_decode(model, src, src_valid_len, bos, steps):
    """Exactly `steps` greedy tokens (batch, steps), the state threaded from call to call."""
    return model.greedy(np.asarray(src), lengths(src_valid_len), bos, steps)


def recompute_greedy_decode(model, src, src_valid_len, bos, steps):
    """The same tokens, the decoder re-run over the whole prefix from the initial state at each step."""
    initial = model.init_state(encode(model, src, src_valid_len), lengths(src_valid_len))
    tokens = np.full((len(src), 1), bos, np.int64)
    for _ in range(steps):
        logits, _ = model.decode(tokens, initial)
        tokens = np.concatenate([tokens, logits[:, -1].argmax(-1)[:, None]], 1)
    return tokens[:, 1:]
