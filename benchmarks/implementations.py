"""Decode throughput of any implementation, named as the conformance suite names it.

    pytest benchmarks/ --impl=mypkg.models:make_model,torch --benchmark-only
    BENCH_IMPLS=mypkg.models:make_model ASV_PYTHONPATH=$PWD asv run --python=same --quick --bench ImplDecode

A name is `torch`, `tensorflow`, `mxnet`, `numpy` or `module:factory`, resolved and built by
`conformance.loading` (the suite's one resolver), on the workload's spec (workload.py). Three loops,
each labelled so in every table:

- "interface-eager": `conformance.decoding.greedy_tokens`, encoder -> init_state -> one
  Decoder.forward per token through the model's adapter, as written: what decoding costs for a model
  we did not write, Python dispatch included ("interface" is its old name, kept for the gate);
- "interface-compiled": the same loop as the model would be deployed, compiled by its framework
  through its bridge (conformance.decoding.InterfaceLoop: TensorFlow tf.function and XLA, MXNet
  hybridize, torch torch.compile); where the model cannot be compiled, the eager loop with the
  reason, in `how` (pytest-benchmark's extra_info and tables; asv skips the case, saying why);
- "native": the `greedy_decode(model, src, src_valid_len, bos, steps)` that the factory's module
  exports, if it does (our references' compiled loops), given what the factory returned.

`--loop` (pytest) and BENCH_LOOPS (asv) choose among them, comma-separated; default
interface-eager and native.

The device ("cpu", "cuda:0") reaches the factory in its spec, as in `pytest conformance/ --device`:
the factory builds there or declines it, and the bridge moves a torch or MXNet model that it built
elsewhere. Both loops return numpy tokens, so a timed decode includes waiting for the device.
A factory that declines a family or a device, or a loop an implementation does not offer, is
Unavailable (a skip with its reason); a name that cannot be resolved or a factory that raises is an
error.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import time
from typing import Callable

import numpy as np

from conformance import loading
from conformance.decoding import InterfaceLoop
from conformance.sources import kind_of
from conformance.plugin import split_list  # how --impl values are split: comma-separated, repeatable

from . import workload
from .backends import Unavailable, check_root, factory_output

LOOPS = ("interface-eager", "interface-compiled", "native")
DEFAULT_LOOPS = ("interface-eager", "native")
LOOP_NAMES = {**{loop: loop for loop in LOOPS}, "interface": "interface-eager", "eager": "interface-eager",
              "compiled": "interface-compiled"}
DEFAULT_IMPLS = tuple(loading.BUILTIN)  # asv without BENCH_IMPLS: our references


def asv_impls() -> list[str]:
    """asv's implementation parameter: BENCH_IMPLS (comma-separated --impl names), else our references."""
    return split_list([os.environ.get("BENCH_IMPLS", "")]) or list(DEFAULT_IMPLS)


def loops(names: list[str]) -> list[str]:
    """The loops named (LOOPS, or their short names eager, compiled, interface), in LOOPS' order; none
    named: DEFAULT_LOOPS. ValueError for an unknown name."""
    unknown = [n for n in names if n not in LOOP_NAMES]
    if unknown:
        raise ValueError(f"unknown loop {', '.join(unknown)}; known: {', '.join(LOOP_NAMES)}")
    chosen = {LOOP_NAMES[n] for n in names}
    return [loop for loop in LOOPS if loop in chosen] or list(DEFAULT_LOOPS)


def asv_loops() -> list[str]:
    """asv's loop parameter: BENCH_LOOPS (comma-separated), else DEFAULT_LOOPS."""
    return loops(split_list([os.environ.get("BENCH_LOOPS", "")]))


@dataclasses.dataclass(frozen=True, eq=False)
class ImplSubject:
    name: str
    family: str
    model: object  # conformance.harness.CheckedModel
    native: Callable | None  # the factory module's greedy_decode, bound to what the factory returned

    def loop(self, loop: str) -> Callable:
        """(src, src_valid_len, steps) -> (batch, steps) tokens by the named loop, from the start id the
        model declares (Declared(start_tgt_id=...)), else the workload's BOS; its `how` says what runs
        ("eager", the framework's compiled form, or the eager fallback and why; "native")."""
        start = self.model.vocab.start
        bos = workload.BOS if start is None else start
        loop = LOOP_NAMES.get(loop, loop)
        if loop in ("interface-eager", "interface-compiled"):
            interface = InterfaceLoop(self.model, compiled=loop == "interface-compiled")

            def run(src, valid, steps):
                tokens = interface(src, valid, bos, steps)
                run.how = interface.how
                return tokens

            run.how = interface.how
            return run
        if loop != "native":
            raise Unavailable(f"unknown loop {loop!r}; known: {', '.join(LOOPS)}")
        if self.native is None:
            raise Unavailable(f"{self.name} offers no native loop (its factory's module has no greedy_decode)")

        def native(src, valid, steps):
            return self.native(src, valid, bos, steps)

        native.how = "native"
        return native


@functools.lru_cache(maxsize=None)
def impl_subject(name: str, family: str, device: str) -> ImplSubject:
    """Resolve, build and warm nothing yet: once per process (asv re-runs setup between samples)."""
    impl = loading.resolve(name)
    module = impl.target.split(":", 1)[0]  # imported by resolve, unless it failed to
    if not impl.error:
        check_root(sys.modules[module].__file__, impl.target)
    workload.pin_framework_threads()  # the factory's module has imported its framework; nothing ran on it yet
    built = loading.build(impl, workload.spec(family, device))
    if isinstance(built, loading.Declined):
        raise Unavailable(built.reason)
    if isinstance(built, loading.Broken):
        raise RuntimeError(built.reason)
    native = getattr(sys.modules[module], "greedy_decode", None)
    if callable(native):
        native = on_device(built, functools.partial(native, factory_output(built)))
    else:
        native = None
    return ImplSubject(name, family, built, native)


def on_device(model, call: Callable) -> Callable:
    """`call` under the device scope of the model's adapter where it has one: TensorFlow places ops by
    scope, not by where their variables are (torch and MXNet arrays follow the model's parameters)."""
    scope = getattr(model.adapter, "device_scope", contextlib.nullcontext)

    def scoped(*args):
        with scope():
            return call(*args)

    return scoped


def impl_call(name, family, device, batch, loop, steps) -> Callable[[], np.ndarray]:
    """A no-argument call decoding the workload's source by `loop`, warmed up at this shape; its
    `warmup_seconds`, the first call's (tracing, compiling), are never timed as decoding, and its `how`
    says what the loop runs (a compiled loop that fell back to eager says so, and why)."""
    subject = impl_subject(name, family, device)
    run = subject.loop(loop)
    src, valid = workload.source(batch, family)
    if kind_of(family) == "tokens":
        src = src % subject.model.vocab.src_size  # a model that declared a smaller vocabulary gets ids it has
    start = time.perf_counter()
    tokens = run(src, valid, steps)  # warm-up: tracing, compilation, caches, at the timed shape
    warmup_seconds = time.perf_counter() - start
    if np.shape(tokens) != (batch, steps):
        raise AssertionError(f"{name} {loop} loop returned shape {np.shape(tokens)}, not {(batch, steps)}")

    def decode():
        return run(src, valid, steps)

    decode.warmup_seconds, decode.how = warmup_seconds, run.how
    return decode
