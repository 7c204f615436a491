"""From an `--impl` value to checked models: resolving factories and building families.

Nothing here raises: every problem becomes a message the plugin attaches to the contracts it
affects, so a bad `--impl` costs its own rows of the report and nothing else.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import signal
import threading
import time
import types
from typing import Callable

import numpy as np

from .bridges import as_adapter, seed_frameworks
from .harness import CheckedModel, ConformanceError, one_line
from .inputs import Batch
from .spec import ModelSpec, Unsupported

BUILTIN = {
    "torch": "impls.torch:make_model",
    "tensorflow": "impls.tensorflow:make_model",
    "mxnet": "impls.mxnet:make_model",
}


@dataclasses.dataclass
class Impl:
    name: str  # as given to --impl
    target: str  # module:attr
    factory: Callable | None = None
    error: str = ""  # why it could not be resolved


def resolve(name: str) -> Impl:
    target = BUILTIN.get(name, name)
    if ":" not in target:
        return Impl(name, target, error=f"unknown implementation {name!r}: use {', '.join(BUILTIN)} or module:factory")
    module_name, attr = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # an import can fail any way, SystemExit included
        return Impl(name, target, error=f"cannot import {module_name!r}: {one_line(exc)}")
    factory = getattr(module, attr, None)
    if not callable(factory):
        return Impl(name, target, error=f"{module_name!r} has no callable {attr!r}")
    return Impl(name, target, factory)


@contextlib.contextmanager
def deadline(seconds: float, error: type[BaseException] = TimeoutError):
    """Raise `error` in the main thread after `seconds`: a factory can hang before any test runs.

    Nests: inside an earlier deadline (a contract's) that one stays in charge, and on exit the
    enclosing timer is re-armed with what is left of it. Yields a flag object: `.expired`.
    """
    timer = types.SimpleNamespace(expired=False)
    if threading.current_thread() is not threading.main_thread():
        yield timer
        return
    outer_left = signal.getitimer(signal.ITIMER_REAL)[0]
    if outer_left and outer_left <= seconds:
        yield timer
        return

    def expire(signum, frame):
        timer.expired = True
        raise error(f"did not finish within {seconds:g}s (--conformance-timeout)")

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield timer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left:
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - started), 1e-3))


@dataclasses.dataclass
class Declined:
    reason: str


@dataclasses.dataclass
class Broken:
    reason: str
    hung: bool = False  # it did not finish: every contract would only wait for it again


def build(impl: Impl, spec: ModelSpec) -> CheckedModel | Declined | Broken:
    if impl.error:
        return Broken(f"--impl={impl.name}: {impl.error}")
    seed_frameworks(spec.seed)
    try:
        model = impl.factory(spec)
    except Unsupported as exc:
        return Declined(f"{impl.target} declined {spec.family}/{spec.dtype}: {exc}")
    except Exception as exc:
        return Broken(f"factory {impl.target}(family={spec.family!r}, dtype={spec.dtype!r}) raised {one_line(exc)}")
    if model is None:
        return Declined(f"{impl.target} returned None for {spec.family}/{spec.dtype}")
    try:
        return CheckedModel(as_adapter(model, spec), spec, impl.name)
    except Unsupported as exc:
        return Declined(f"bridge declined {spec.family}/{spec.dtype}: {exc}")
    except Exception as exc:
        return Broken(f"cannot use what {impl.target} returned for {spec.family!r}: {one_line(exc)}")


def smoke_test(model: CheckedModel) -> str:
    """'' if a tiny decode runs and returns logits in the model's dtype, else what went wrong."""
    batch = Batch(np.zeros((2, 3), np.int64), np.array([3, 2], np.int64), np.zeros((2, 2), np.int64))
    try:
        logits = model.teacher_forced(batch)
    except ConformanceError as exc:
        return str(exc)
    return "" if logits.dtype == np.dtype(model.dtype) else f"logits came back as {logits.dtype}"


class ModelCache:
    """One model per (impl, family, dtype) for the whole session; contracts must leave it as found."""

    def __init__(self, seed: int, timeout: float):
        self.seed = seed
        self.timeout = timeout  # for each build and each smoke test
        self._built: dict[tuple, CheckedModel | Declined | Broken] = {}

    def get(self, impl: Impl, family: str, dtype: str):
        key = (impl.name, family, dtype)
        if key not in self._built:
            with deadline(self.timeout) as timer:
                built = build(impl, ModelSpec(family, dtype=dtype, seed=self.seed))
            if timer.expired and isinstance(built, Broken):
                built.hung = True
            self._built[key] = built
        return self._built[key]

    def smoke_test(self, model) -> tuple[str, bool]:
        """(what went wrong or '', whether it hung)."""
        if not isinstance(model, CheckedModel):
            return model.reason, getattr(model, "hung", False)
        with deadline(self.timeout) as timer:
            problem = smoke_test(model)
        return problem, timer.expired

    def precise(self, impl: Impl, family: str):
        """float64 where the implementation can run it, float32 (with a note saying why) otherwise."""
        key = (impl.name, family, "precise")
        if key not in self._built:
            model = self.get(impl, family, "float64")
            problem, hung = self.smoke_test(model)
            if hung:  # it would hang again in float32 and in every contract: one wait is enough
                model = Broken(problem, hung=True)
            elif problem:
                fallback = self.get(impl, family, "float32")
                if isinstance(fallback, CheckedModel) and not self.smoke_test(fallback)[0]:
                    fallback.note = f"float64 unavailable ({problem}); float32 tolerances apply"
                    model = fallback
            self._built[key] = model
        return self._built[key]
