"""Side-by-side decode throughput in one process (pytest-benchmark).

    pytest benchmarks/ --benchmark-only                        # measure: a few minutes
    pytest benchmarks/ --impl=torch --benchmark-only --benchmark-json=run.json && python -m benchmarks.loops run.json
    pytest benchmarks/                                         # smoke: every case once, 8 steps
    pytest benchmarks/ --benchmark-only --device=cuda:0        # on a GPU (peers skip: cpu only)

Every case encodes the workload's source of its family's kind (workload.py: token ids, frames,
images) and greedily decodes PEER_STEPS (32) tokens; the tables' medians give tokens/s = batch *
steps / median (extra_info carries both). Groups are "<backend> <family> batch <B>": a
backend-family's cached decoder beside its own full-prefix recompute. Each backend's peers
(benchmarks/peers_<backend>.py: the Transformer's; the speech models': Speech2Text, keras-hub's Whisper) join
their family's groups and run right after its reference, so the reference's ratios to them read off
one table. A backend with no reference of a family yet skips its cases, saying so.
For the speed targets, which need interleaved calls on shared cores, see benchmarks/ratios.py.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from conformance.spec import device_name

from . import workload as W
from .backends import MODES, Unavailable, decode_call, peers
from .implementations import impl_call

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def cases():
    for backend in W.BACKENDS:
        for family in W.FAMILIES:
            for mode in MODES:
                yield pytest.param(backend, family, mode, None, id=f"{backend}-{family}-{mode}")
            for peer in peers(backend, family):
                yield pytest.param(backend, family, "peer", peer, id=f"{backend}-peer-{peer}")


@pytest.fixture
def device(request):
    """--device, the conformance plugin's option: cpu (default), cuda or cuda:N."""
    return device_name(request.config.getoption("device", default="cpu"))


def build(backend, family, mode, peer, batch, steps, device):
    if peer is not None:
        if device != "cpu":
            raise Unavailable(f"peers run on the cpu only, not on {device}")
        return peers(backend, family)[peer][1](batch, steps)
    return decode_call(backend, family, device, batch, mode, steps)


@pytest.mark.parametrize("batch", W.BATCHES, ids=lambda b: f"B{b}")
@pytest.mark.parametrize("backend, family, mode, peer", list(cases()))
def test_decode(benchmark, steps, device, backend, family, mode, peer, batch):
    start = time.perf_counter()
    try:
        decode = build(backend, family, mode, peer, batch, steps, device)
        decode()  # a peer's first call: whatever it compiles on first use (our references warmed up in build)
    except Unavailable as exc:
        pytest.skip(str(exc))
    # Building and the first call (tracing, compiling) are never timed as decoding: reported beside it.
    setup_seconds = getattr(decode, "warmup_seconds", None) or time.perf_counter() - start
    benchmark.group = f"{backend} {family} batch {batch}"
    benchmark.extra_info.update(
        backend=backend, family=family, batch=batch, steps=steps, tokens=batch * steps, device=device,
        mode=mode, impl=peers(backend, family)[peer][0] if peer else f"impls.{backend} {mode}", setup_seconds=setup_seconds,
    )
    tokens = benchmark.pedantic(decode, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    assert len(tokens) == batch and all(len(row) == steps for row in tokens)


def test_impl_decode(benchmark, steps, device, impl_name, family, batch, loop):
    """`--impl` names (conftest.py): each implementation's interface loop, and its native loop where
    its factory's module offers one, grouped by family and batch so implementations sit side by side."""
    try:
        decode = impl_call(impl_name, family, device, batch, loop, steps)
    except Unavailable as exc:
        pytest.skip(str(exc))
    benchmark.group = f"{family} batch {batch}"
    # `how`: what the loop ran ("eager", the compiled form, "eager (not compiled: <why>)", "native").
    benchmark.extra_info.update(impl=impl_name, loop=f"{loop} loop", how=decode.how, family=family, batch=batch,
                                steps=steps, tokens=batch * steps, device=device, setup_seconds=decode.warmup_seconds)
    tokens = benchmark.pedantic(decode, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    assert np.shape(tokens) == (batch, steps)
