"""From an `--impl` value to checked models: resolving factories and building families.

Nothing here raises: every problem becomes a message the plugin attaches to the contracts it
affects, so a bad `--impl` costs its own rows of the report and nothing else.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import signal
import sys
import threading
import time
import types
from typing import Callable

import numpy as np

from .bridges import as_adapter, building_on, seed_frameworks
from .faults import WATCHDOG
from .harness import DEADLINE, FLOAT64_UNAVAILABLE, PASS_THROUGH, CheckedModel, ConformanceError, one_line
from .inputs import Case, Vocabulary, random_batch
from . import repeatability
from .precision import effective_precision
from .sources import source_of
from .spec import Declared, ModelSpec, Unsupported, device_name
from .text import clean

BUILTIN = {
    # impls/ in the repository, installed under this name; `factory` declares canonical weights
    "torch": "conformance_impls.torch:factory",
    "tensorflow": "conformance_impls.tensorflow:factory",
    "mxnet": "conformance_impls.mxnet:factory",
    "numpy": "conformance_impls.numpy:factory",  # the executable specification of docs/weights.md
    "onnxruntime": "conformance_impls.onnxruntime:factory",  # the torch references exported to ONNX (extra [onnx])
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
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: a module beside the user comes first
    try:
        module = importlib.import_module(module_name)
    except PASS_THROUGH:
        raise
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
        DEADLINE.fired = error(f"did not finish within {seconds:g}s (--conformance-timeout)")
        raise DEADLINE.fired

    enclosing_fired, DEADLINE.fired = DEADLINE.fired, None
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    WATCHDOG.arm(seconds)  # for a model stuck in native code, where SIGALRM's handler never runs
    try:
        yield timer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        WATCHDOG.disarm()
        signal.signal(signal.SIGALRM, previous)
        DEADLINE.fired = enclosing_fired
        if outer_left:
            left = max(outer_left - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left)
            WATCHDOG.arm(left)


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
        with building_on(spec.device):
            model = impl.factory(spec)
    except Unsupported as exc:
        return Declined(f"{impl.target} declined {spec.family}/{spec.dtype}{on(spec)}: {clean(exc)}")
    except PASS_THROUGH:
        raise
    except BaseException as exc:  # sys.exit() in a factory is its failure, not the run's end
        return Broken(f"factory {impl.target}(family={spec.family!r}, dtype={spec.dtype!r}) raised {one_line(exc)}")
    declared = model if isinstance(model, Declared) else Declared(model)
    if declared.model is None:
        return Declined(f"{impl.target} returned None for {spec.family}/{spec.dtype}")
    limit = declared.tokens_per_call
    if limit is not None and not (isinstance(limit, (int, np.integer)) and limit >= 1):
        return Broken(f"{impl.target} declared tokens_per_call={limit!r}: a decoder call takes one token or more")
    try:
        vocab = declared_vocabulary(spec, declared)
        source = source_of(spec, vocab, declared.encoder_lengths, declared.fixed_src_steps)
    except ValueError as exc:
        return Broken(f"{impl.target} declared {exc}")
    try:
        adapter = as_adapter(declared.model, spec)
    except Unsupported as exc:
        return Declined(f"bridge declined {spec.family}/{spec.dtype}{on(spec)}: {clean(exc)}")
    except PASS_THROUGH:
        raise
    except BaseException as exc:
        return Broken(f"cannot use what {impl.target} returned for {spec.family!r}: {one_line(exc)}")
    built_on = getattr(adapter, "device", spec.device)
    with contextlib.suppress(ValueError):
        built_on = device_name(built_on)
    if built_on != spec.device:  # an adapter of the user's own: nothing moves it
        return Declined(f"{impl.target} built {spec.family} on {built_on}, not on {spec.device}")
    return CheckedModel(adapter, spec, impl.name, vocab, source, canonical_weights=declared.canonical_weights,
                        weights_id=declared.weights_id, tokens_per_call=declared.tokens_per_call)


def on(spec: ModelSpec) -> str:
    """" on cuda:0" where a device other than the default one was asked for."""
    return "" if spec.device == "cpu" else f" on {spec.device}"


def declared_vocabulary(spec: ModelSpec, declared: Declared) -> Vocabulary:
    """The spec's vocabularies with what the model declared; ValueError says what is inconsistent."""
    sizes = {"src": declared.src_vocab or spec.src_vocab, "tgt": declared.tgt_vocab or spec.tgt_vocab}
    reserved = {"src": frozenset(declared.reserved_src_ids), "tgt": frozenset(declared.reserved_tgt_ids)}
    for side, size in sizes.items():
        if not isinstance(size, (int, np.integer)) or size < 2:
            raise ValueError(f"{side}_vocab={size!r}: a vocabulary has two ids or more")
        outside = sorted(i for i in reserved[side] if not 0 <= i < size)
        if outside:
            raise ValueError(f"reserved_{side}_ids {outside} outside its vocabulary [0, {size})")
    start = declared.start_tgt_id
    if start is not None and not (isinstance(start, (int, np.integer)) and 0 <= start < sizes["tgt"]):
        raise ValueError(f"start_tgt_id={start!r} outside its vocabulary [0, {sizes['tgt']})")
    for side, size in sizes.items():
        special = reserved[side] | ({start} if side == "tgt" and start is not None else set())
        if size - len(special) < 2:
            raise ValueError(f"reserved_{side}_ids{' and start_tgt_id' if side == 'tgt' and start is not None else ''} "
                             f"leave fewer than two ordinary ids of {size}")
    return Vocabulary(int(sizes["src"]), int(sizes["tgt"]), reserved["src"], reserved["tgt"],
                      None if start is None else int(start))


def smoke_test(model: CheckedModel) -> str:
    """'' if a tiny decode runs and returns logits in the model's dtype, else what went wrong."""
    batch = random_batch(np.random.default_rng(0), model, Case(2, 3, 2))
    try:
        logits = model.teacher_forced(batch)
    except ConformanceError as exc:
        return str(exc)
    return "" if logits.dtype == np.dtype(model.dtype) else f"logits came back as {logits.dtype}"


class ModelCache:
    """One model per (impl, family, dtype) for the whole session; contracts must leave it as found."""

    def __init__(self, seed: int, timeout: float, device: str = "cpu"):
        self.seed = seed
        self.timeout = timeout  # for each build and each smoke test
        self.device = device  # where models are built, unless `get` is told otherwise
        self._built: dict[tuple, CheckedModel | Declined | Broken] = {}

    def get(self, impl: Impl, family: str, dtype: str, weights: str | None = None, device: str | None = None, **sizes):
        """Built from the factory's own initialisation, or from a canonical weights file of a spec
        with other `sizes` (golden vectors use smaller ones); on the cache's device unless `device`."""
        device = device or self.device
        key = (impl.name, family, dtype, weights, device, *sorted(sizes.items()))
        if key not in self._built:
            with deadline(self.timeout) as timer:
                built = build(impl, ModelSpec(family, dtype=dtype, seed=self.seed, weights=weights, device=device, **sizes))
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
            self._built[key] = self._most_precise(impl, family)
        return self._built[key]

    def _most_precise(self, impl: Impl, family: str):
        model = self.get(impl, family, "float64")
        problem, hung = self.smoke_test(model)
        if hung:  # it would hang again in float32 and in every contract: one wait is enough
            return Broken(problem, hung=True)
        if not problem:
            return self.measured(model)
        fallback = self.get(impl, family, "float32")
        fallback_problem, _ = self.smoke_test(fallback)
        if not fallback_problem:
            fallback.note = f"{FLOAT64_UNAVAILABLE} ({problem}); float32 tolerances apply"
            return self.measured(fallback)
        if isinstance(model, Declined) and isinstance(fallback, Declined):  # the reason once where only the dtype differs
            same = problem.replace("float64", "float32") == fallback_problem
            return Declined(problem if same else f"{problem}; {fallback_problem}")
        # Usable in neither dtype: an error of the implementation, not a skip, with both reasons, and the
        # source's sizes where a model built for others (80 features, say) fails on what the spec gave it.
        sizes = model.source.spec_sizes() if isinstance(model, CheckedModel) else ""
        return Broken(f"unusable in float64 ({problem}) and in float32 ({fallback_problem})"
                      + (f"; the source it was given: {sizes}" if sizes else ""))

    def measured(self, model: CheckedModel):
        """The model, with the calls that do not repeat and then the precision it computes in measured
        (conformance/repeatability.py, conformance/precision.py); Broken if that does not finish."""
        with deadline(self.timeout) as timer:
            try:
                model.randomness = repeatability.measure(model, self.seed)
                precision, note = effective_precision(model, self.seed)
                model.precision, model.note = precision, model.note or note
            except TimeoutError:
                pass
        if timer.expired:
            return Broken(f"measuring its precision did not finish within {self.timeout:g}s (--conformance-timeout)", hung=True)
        return model

    def refuse_if_all_declined(self, impl: Impl, families: list[str]) -> None:
        """An implementation that declines every family it is asked for cannot be used at all: that
        is an error of the run (exit 1), not a run of skipped contracts that passes."""
        built = {family: self.precise(impl, family) for family in families}
        if built and all(isinstance(b, Declined) for b in built.values()):
            reasons = "; ".join(f"{family}: {b.reason}" for family, b in built.items())
            for family in families:
                self._built[(impl.name, family, "precise")] = Broken(f"declined every family it was asked for ({reasons})")
