"""How a backend plugs into the benchmarks: one reference package, three functions.

A backend is a built-in `--impl` name (torch, tensorflow, mxnet), resolved and built as the
conformance suite does it (`conformance.loading`: `torch` is `conformance_impls.torch:factory`, the
installed impls/torch), so a benchmark process finds it wherever it runs: asv starts its processes
in a temporary directory, with no checkout on the import path. Beside its factory the package provides

    greedy_decode(model, src, src_valid_len, bos, steps) -> np.ndarray (batch, steps)
    recompute_greedy_decode(model, src, src_valid_len, bos, steps) -> np.ndarray (batch, steps)
    encode(model, src, src_valid_len) -> native encoder outputs

taking numpy int64 inputs, running where the model's parameters live. Device checks, placement and
synchronisation are each framework's bridge's (`device_scope`, `place`, `synchronize` in
conformance/bridges/<backend>_bridge.py): nothing here knows a framework. A function the package does
not define yet makes the benchmarks that need it skip with a reason (asv counts NotImplementedError
raised in setup as a skip; the pytest side calls pytest.skip), so defining it later lights them up
with no benchmark change. A reference that cannot be imported, or a factory that raises, is an error:
the benchmark fails, it does not skip.
"""
from __future__ import annotations

import functools
import importlib
import os
import pathlib
import sys
import time

import numpy as np

from conformance import loading
from conformance.bridges import for_backend
from conformance.spec import Unsupported, device_name

from . import workload

MODES = {"cached": "greedy_decode", "recompute": "recompute_greedy_decode"}  # how a decode keeps its past


class Unavailable(NotImplementedError):
    """This backend / family / device / function cannot be benchmarked here; the message says why."""


def check_root(path, what: str) -> None:
    """The gate (compare) sets BENCH_IMPLS_ROOT to the worktree of the commit under test: time its code or
    nothing (an editable install elsewhere would make both commits one code)."""
    root = os.environ.get("BENCH_IMPLS_ROOT")
    if root and not (path and pathlib.Path(path).resolve().is_relative_to(pathlib.Path(root).resolve())):
        raise RuntimeError(f"{what} comes from {path}, not from {root}")


# --- the subject of a benchmark --------------------------------------------------------------------

class Subject:
    """One model of one backend on one device, and how to call its impl package there."""

    def __init__(self, backend, family, device, package, model, bridge, scope):
        self.backend, self.family, self.device = backend, family, device
        self.package, self.model = package, model
        self.bridge, self.scope = bridge, scope  # the framework's device glue (conformance.bridges)
        # (function name, batch, steps) -> seconds of its first call: tracing and compiling, never timed
        # as decoding, reported beside it
        self.warmup_seconds: dict = {}

    def function(self, name):
        fn = getattr(self.package, name, None)
        if fn is None:
            raise Unavailable(f"{self.package.__name__} has no {name}() yet")
        return fn

    def check(self, *names):
        for name in names:
            self.function(name)

    def greedy(self, src, valid, steps):
        with self.scope():
            return self.function("greedy_decode")(self.model, src, valid, workload.BOS, steps)

    def recompute(self, src, valid, steps):
        with self.scope():
            return self.function("recompute_greedy_decode")(self.model, src, valid, workload.BOS, steps)

    def encode(self, src, valid):
        with self.scope():
            out = self.function("encode")(self.model, src, valid)
        self.bridge.synchronize(self.device)
        return out


@functools.lru_cache(maxsize=None)
def subject(backend: str, family: str, device: str) -> Subject:
    """Resolve, build and place the model once per process (asv re-runs setup between samples), by the
    suite's resolver and builder, as `pytest conformance/ --impl=<backend> --device=<device>` does."""
    device = device_name(device)
    if backend not in workload.BACKENDS:
        raise Unavailable(f"unknown backend {backend!r}")
    impl = loading.resolve(backend)
    if impl.error:  # our reference, installed with the suite: a failure of the run, never a skip
        raise ImportError(f"--impl={backend}: {impl.error}")
    package = sys.modules[impl.target.split(":", 1)[0]]
    check_root(package.__file__, impl.target)
    workload.pin_framework_threads()  # the framework is imported; nothing ran on it yet
    bridge = for_backend(backend)
    try:
        scope = bridge.device_scope(device)  # a device the framework cannot see: declined before building
    except Unsupported as exc:
        raise Unavailable(str(exc)) from exc
    built = loading.build(impl, workload.spec(family, device))
    if isinstance(built, loading.Declined):
        raise Unavailable(built.reason)
    if isinstance(built, loading.Broken):
        raise RuntimeError(built.reason)
    return Subject(backend, family, device, package, factory_output(built), bridge, scope)


def factory_output(model) -> object:
    """What the factory returned, given the suite's checked model: a bridge keeps the framework model
    it wrapped (and placed) as `.model`; an adapter of the user's own is what the factory returned."""
    adapter = model.adapter
    return adapter.model if type(adapter).__module__.startswith("conformance.bridges.") else adapter


def prepared(backend, family, device, batch, *names, steps=None):
    """The subject with `names` checked, warmed up (tracing, compilation, caches) at this shape."""
    subj = subject(backend, family, device)
    subj.check(*names)
    _warm(subj, batch, names, steps)
    return subj


@functools.lru_cache(maxsize=None)
def _warm(subj, batch, names, steps):
    src, valid = workload.source(batch, subj.family)
    for name in names:
        start = time.perf_counter()
        if name == "encode":
            subj.encode(src, valid)
        else:
            run = subj.greedy if name == "greedy_decode" else subj.recompute
            out = run(src, valid, steps)
            if np.shape(out) != (batch, steps):
                raise AssertionError(f"{subj.backend} {name} returned shape {np.shape(out)}, not {(batch, steps)}")
        subj.warmup_seconds.setdefault((name, batch, steps), time.perf_counter() - start)


def peers(backend: str, family: str = "transformer") -> dict:
    """{name: (label, builder(batch, steps) -> no-argument decode)}: the peers of `backend`'s reference of
    `family`, from benchmarks/peers_<backend>.py (FAMILY_PEERS, or PEERS: the Transformer's).

    Builders import their frameworks lazily and raise Unavailable when a peer is not installed.
    """
    try:
        module = importlib.import_module(f"{__package__}.peers_{backend}")
    except ModuleNotFoundError:
        return {}
    return getattr(module, "FAMILY_PEERS", {"transformer": module.PEERS}).get(family, {})


def floor(backend: str):
    """(name, label, builder(batch, steps) -> no-argument call) of the matrix products of a decode alone,
    from benchmarks/peers_<backend>.py, or None: the bound the reference is measured against."""
    try:
        return getattr(importlib.import_module(f"{__package__}.peers_{backend}"), "FLOOR", None)
    except ModuleNotFoundError:
        return None


def decode_call(backend, family, device, batch, mode, steps):
    """A no-argument call decoding the workload's source, `steps` tokens, "cached" or "recompute";
    built and warmed up at this shape. Its `warmup_seconds`: the first call's (compiling included)."""
    subj = prepared(backend, family, device, batch, MODES[mode], steps=steps)
    src, valid = workload.source(batch, family)
    run = subj.greedy if mode == "cached" else subj.recompute

    def decode():
        return run(src, valid, steps)

    decode.warmup_seconds = subj.warmup_seconds[(MODES[mode], batch, steps)]
    return decode


def median_seconds(fn, repeat=5):
    """Median time of `repeat` calls, on the workload's clock (the caller has warmed up)."""
    times = []
    for _ in range(repeat):
        start = workload.TIMER()
        fn()
        times.append(workload.TIMER() - start)
    return float(np.median(times))
