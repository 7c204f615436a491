"""Greedy decoding through the d2l interface: what "decode throughput" means for any implementation.

`greedy_tokens(model, src, src_valid_len, bos, steps)` decodes exactly `steps` tokens from `bos`, no
early stop (`src_valid_len` None for images, conformance/sources.py): encoder -> init_state -> one Decoder.forward per token, the argmax of its last logits
fed back. It lives beside the protocol, not in benchmarks/, because it only uses the protocol: the
benchmarks time it and the tests check it against each reference's own fast loop.

Two ways to run that loop, same tokens:
- an adapter may define `greedy_tokens(src, src_valid_len, bos, steps)`: our bridges do, keeping
  tokens and state as framework arrays on the model's device between steps (a per-token copy to
  numpy would be timed as part of the model);
- any other adapter (a user's own `Seq2SeqAdapter`) goes through its numpy protocol:
  `encode` / `init_state` once, then `decode` per token, its logits coming back as numpy.
"""
from __future__ import annotations

import numpy as np

from .harness import CheckedModel


def greedy_tokens(model, src, src_valid_len, bos: int, steps: int) -> np.ndarray:
    """(batch, steps) int64 greedy tokens of a CheckedModel or a Seq2SeqAdapter."""
    adapter = model.adapter if isinstance(model, CheckedModel) else model
    native = getattr(adapter, "greedy_tokens", None)
    if native is not None:
        return np.asarray(native(np.asarray(src), lengths(src_valid_len), int(bos), int(steps)), dtype=np.int64)
    return protocol_greedy_tokens(adapter, src, src_valid_len, bos, steps)


def lengths(src_valid_len):
    """The valid lengths as an array, or None for a source that has none (images)."""
    return None if src_valid_len is None else np.asarray(src_valid_len)


def protocol_greedy_tokens(adapter, src, src_valid_len, bos: int, steps: int) -> np.ndarray:
    """The same loop through the numpy protocol only: the path of an adapter without its own."""
    src, valid = np.asarray(src), lengths(src_valid_len)
    state = adapter.init_state(adapter.encode(src, valid), valid)
    tokens = np.full((src.shape[0], 1), bos, dtype=np.int64)
    out = np.empty((src.shape[0], steps), dtype=np.int64)
    for t in range(steps):
        logits, state = adapter.decode(tokens, state)
        tokens = np.asarray(logits)[:, -1].argmax(-1)[:, None].astype(np.int64)
        out[:, t] = tokens[:, 0]
    return out
