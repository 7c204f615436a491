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

Eagerly, one call per token times the framework's Python dispatch as much as the model (70 to 210x
the compiled loop for an eager Keras model at batch 1). `InterfaceLoop(model, compiled=True)` runs the
same loop the way such a model is deployed: an adapter's `compiled_greedy_tokens`, where the
framework compiles it (TensorFlow: tf.function and XLA; MXNet: hybridize; torch: torch.compile; see
each bridge), falling back to the eager loop with the reason where the model cannot be compiled.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .harness import CheckedModel


class NotCompiled(Exception):
    """Raised by an adapter's compiled_greedy_tokens: the model cannot run compiled; the message says why."""


class InterfaceLoop:
    """The interface loop of a model, eager or compiled, and what it runs (`how`, for every label).

    `how`: "eager"; the framework's compiled form, as the adapter names it (`compiled_how`, e.g.
    "tf.function, XLA"); or, where compiling failed, "eager (not compiled: <reason>)". The first call
    decides, so warm up before timing; tokens are the eager loop's (tests/test_interface_loop.py).
    """

    def __init__(self, model, compiled: bool):
        self.adapter = model.adapter if isinstance(model, CheckedModel) else model
        self.kind = "interface-compiled" if compiled else "interface-eager"
        self._run: Callable = self._eager
        self.how = "eager"
        if compiled:
            if callable(getattr(self.adapter, "compiled_greedy_tokens", None)):
                self._run, self.how = self._first_compiled, "compiled"
            else:
                self.how = "eager (not compiled: the adapter has no compiled_greedy_tokens)"

    def __call__(self, src, src_valid_len, bos: int, steps: int) -> np.ndarray:
        return self._run(src, src_valid_len, bos, steps)

    def _eager(self, src, src_valid_len, bos, steps):
        return greedy_tokens(self.adapter, src, src_valid_len, bos, steps)

    def _compiled(self, src, src_valid_len, bos, steps):
        valid = None if src_valid_len is None else np.asarray(src_valid_len)  # images have no lengths
        return np.asarray(self.adapter.compiled_greedy_tokens(np.asarray(src), valid, int(bos), int(steps)), dtype=np.int64)

    def _first_compiled(self, src, src_valid_len, bos, steps):
        try:
            tokens = self._compiled(src, src_valid_len, bos, steps)
        except NotCompiled as exc:
            self._run, self.how = self._eager, f"eager (not compiled: {exc})"
            return self._eager(src, src_valid_len, bos, steps)
        self._run, self.how = self._compiled, getattr(self.adapter, "compiled_how", "compiled")
        return tokens


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
