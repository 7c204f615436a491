"""Bridges turn a raw framework model that follows the d2l interface into a `Seq2SeqAdapter`.

Adding a backend means one module here exposing `accepts(obj)`, `wrap(obj, spec)`, `seed(n)`,
`limit_threads(n)` and its device glue (`device_scope`, `place`, `synchronize`), and one line in
`BRIDGES`. A bridge is only imported when its framework already is, so a torch run never imports
TensorFlow.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Iterable

from ..protocol import Seq2SeqAdapter
from ..spec import Unsupported
from ..trees import qualified_name

# (framework module that must already be imported, bridge module)
BRIDGES = (
    ("torch", "conformance.bridges.torch_bridge"),
    ("keras", "conformance.bridges.tensorflow_bridge"),
    ("tf_keras", "conformance.bridges.tf_keras_bridge"),  # Keras 2, beside Keras 3 in one process
    ("mxnet", "conformance.bridges.mxnet_bridge"),
    ("onnxruntime", "conformance.bridges.onnxruntime_bridge"),  # exported graphs (OnnxSeq2Seq)
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


def for_backend(backend: str):
    """The bridge of a backend by its adapter's name ("torch", "tensorflow", "mxnet"), importing its
    framework: the benchmarks' device glue (device_scope, place, synchronize) lives there.
    ModuleNotFoundError for a backend with no bridge."""
    if not backend.isidentifier():
        raise ModuleNotFoundError(f"no bridge for backend {backend!r}")
    return importlib.import_module(f"{__name__}.{backend}_bridge")


def gpu_index(device: str, framework: str, visible: int) -> int | None:
    """None for "cpu"; N for "cuda:N" when the framework sees `visible` GPUs, N among them; else
    Unsupported saying what the framework sees."""
    if device == "cpu":
        return None
    index = int(device.split(":")[1])
    if index >= visible:
        raise Unsupported(f"{framework} sees no GPU" if not visible else f"{framework} sees {visible} GPU(s): no {device}")
    return index


@contextlib.contextmanager
def building_on(device: str):
    """While a factory runs: `device` as the default device of every framework imported so far that
    can see it (TensorFlow creates variables there, MXNet initializes there). A framework that cannot
    is left as it is; its bridge declines the model when it wraps it."""
    with contextlib.ExitStack() as stack:
        for bridge in loaded_bridges():
            try:
                stack.enter_context(bridge.device_scope(device)())
            except Unsupported:
                pass
        yield


def parameters_once(named_by_part: dict[str, Iterable[tuple[str, object]]]) -> dict[str, dict[str, object]]:
    """{part: {name: parameter}} with every parameter once, where it is first found. A parameter tied
    to several modules (an embedding shared by encoder, decoder and output layer) is then perturbed
    once, and its gradient, which sums every use, is counted once. Identity decides, not names."""
    seen: set[int] = set()
    listed: dict[str, dict[str, object]] = {}
    for part, named in named_by_part.items():
        listed[part] = {}
        for name, p in named:
            if id(p) not in seen:
                seen.add(id(p))
                listed[part][name] = p
    return listed


# How many seeding rounds have begun. A round begins before each contract (plugin.py) and each model
# build, so a bridge that changes how it runs a model (the TensorFlow bridge's traced calls) changes it
# only between rounds: two calls that one contract compares bit for bit run alike.
rounds_begun = 0
# The number of the round seed_frameworks is in (None outside one): two bridges of one runtime
# (TensorFlow under Keras 3 and Keras 2) seed it once per round, as nothing can run between their calls.
seeding_round: int | None = None


def seed_frameworks(seed: int) -> None:
    """Seed every framework already imported, so a factory that draws weights is reproducible."""
    global seeding_round, rounds_begun
    rounds_begun += 1
    seeding_round = rounds_begun
    try:
        for bridge in loaded_bridges():
            bridge.seed(seed)
    finally:
        seeding_round = None


def as_adapter(obj, spec) -> Seq2SeqAdapter:
    if isinstance(obj, Seq2SeqAdapter):
        return obj
    for bridge in loaded_bridges():
        if bridge.accepts(obj):
            return bridge.wrap(obj, spec)
    # The most specific bases first: the last ones (object) are the first to go if the line is cut.
    bases = ", ".join(qualified_name(cls) for cls in type(obj).__mro__[1:])
    raise TypeError(
        f"the factory returned a {qualified_name(type(obj))}, which no bridge accepts: neither a conformance."
        "Seq2SeqAdapter nor a torch, keras, tf_keras or mxnet.gluon model with .encoder and .decoder "
        f"(bases: {bases})"
    )
