"""Decode throughput of any implementation, named as the conformance suite names it.

    pytest benchmarks/ --impl=mypkg.models:make_model,torch --benchmark-only
    BENCH_IMPLS=mypkg.models:make_model ASV_PYTHONPATH=$PWD asv run --python=same --quick --bench ImplDecode

A name is `torch`, `tensorflow`, `mxnet`, `numpy` or `module:factory`, resolved and built by
`conformance.loading` (the suite's one resolver), on the workload's spec (workload.py). Two loops:

- "interface": `conformance.decoding.greedy_tokens`, encoder -> init_state -> one Decoder.forward
  per token through the model's adapter: what decoding costs for a model we did not write;
- "native": the `greedy_decode(model, src, src_valid_len, bos, steps)` that the factory's module
  exports, if it does (our references' compiled loops), given what the factory returned.

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
from typing import Callable

import numpy as np

from conformance import loading
from conformance.decoding import greedy_tokens
from conformance.plugin import split_list  # how --impl values are split: comma-separated, repeatable

from . import workload
from .backends import Unavailable, check_root, factory_output

LOOPS = ("interface", "native")
DEFAULT_IMPLS = tuple(loading.BUILTIN)  # asv without BENCH_IMPLS: our references


def asv_impls() -> list[str]:
    """asv's implementation parameter: BENCH_IMPLS (comma-separated --impl names), else our references."""
    return split_list([os.environ.get("BENCH_IMPLS", "")]) or list(DEFAULT_IMPLS)


@dataclasses.dataclass(frozen=True, eq=False)
class ImplSubject:
    name: str
    family: str
    model: object  # conformance.harness.CheckedModel
    native: Callable | None  # the factory module's greedy_decode, bound to what the factory returned

    def loop(self, loop: str) -> Callable:
        """(src, src_valid_len, steps) -> (batch, steps) tokens by the named loop, from the start id the
        model declares (Declared(start_tgt_id=...)), else the workload's BOS."""
        start = self.model.vocab.start
        bos = workload.BOS if start is None else start
        if loop == "interface":
            return lambda src, valid, steps: greedy_tokens(self.model, src, valid, bos, steps)
        if self.native is None:
            raise Unavailable(f"{self.name} offers no native loop (its factory's module has no greedy_decode)")
        return lambda src, valid, steps: self.native(src, valid, bos, steps)


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
    """A no-argument call decoding the workload's source by `loop`, warmed up at this shape."""
    subject = impl_subject(name, family, device)
    run = subject.loop(loop)
    src, valid = workload.source(batch)
    src = src % subject.model.vocab.src_size  # a model that declared a smaller vocabulary gets ids it has
    tokens = run(src, valid, steps)  # warm-up: tracing, compilation, caches, at the timed shape
    if np.shape(tokens) != (batch, steps):
        raise AssertionError(f"{name} {loop} loop returned shape {np.shape(tokens)}, not {(batch, steps)}")
    return lambda: run(src, valid, steps)
