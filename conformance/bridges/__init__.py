"""Bridges turn a raw framework model that follows the d2l interface into a `Seq2SeqAdapter`.

Adding a backend means one module here exposing `accepts(obj)`, `wrap(obj, spec)`, `seed(n)`
and `limit_threads(n)`, and one line in `BRIDGES`. A bridge is only imported when its framework already
is, so a torch run never imports TensorFlow.
"""
from __future__ import annotations

import importlib
import sys

from ..protocol import Seq2SeqAdapter

# (framework module that must already be imported, bridge module)
BRIDGES = (
    ("torch", "conformance.bridges.torch_bridge"),
    ("keras", "conformance.bridges.tensorflow_bridge"),
    ("mxnet", "conformance.bridges.mxnet_bridge"),
)


# Intra-op threads per framework, applied to each bridge as it loads; None leaves the frameworks'
# own defaults. The contracts' models are tiny: extra threads only spin, and cost most on a busy
# machine, so parallelism comes from processes (pytest -n) instead.
threads: int | None = None
_limited: set[str] = set()


def limit_threads(n: int | None) -> None:
    global threads
    threads = n
    _limited.clear()
    list(loaded_bridges())  # the frameworks imported so far; later ones as their bridge loads


def loaded_bridges():
    for framework, module in BRIDGES:
        if framework in sys.modules:
            bridge = importlib.import_module(module)
            if threads and module not in _limited:
                _limited.add(module)
                bridge.limit_threads(threads)
            yield bridge


def seed_frameworks(seed: int) -> None:
    """Seed every framework already imported, so a factory that draws weights is reproducible."""
    for bridge in loaded_bridges():
        bridge.seed(seed)


def as_adapter(obj, spec) -> Seq2SeqAdapter:
    if isinstance(obj, Seq2SeqAdapter):
        return obj
    for bridge in loaded_bridges():
        if bridge.accepts(obj):
            return bridge.wrap(obj, spec)
    raise TypeError(
        f"the factory returned a {type(obj).__module__}.{type(obj).__qualname__}, which is neither a "
        "conformance.Seq2SeqAdapter nor a torch.nn.Module / keras.Model / mxnet.gluon.Block"
    )
