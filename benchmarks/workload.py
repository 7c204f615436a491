"""The fixed decode workload every benchmark and peer runs, and the thread pinning, set once.

Model: d_model 256, 4 heads, FFN 1024, 2 encoder + 2 decoder layers, vocabularies of 1000,
float32, eval mode. Input, by the family's kind of source (conformance/sources.py): 32 token ids;
speech, 10 s of 80 log-mel-like features at 100 frames per second (1,000 frames, subsampled to 250
encoder positions); captioning, a 3x112x112 image (a 14x14 grid after the CNN, Show, Attend and
Tell's; 224x224 would make the CNN 5x the cost of a 32-token decode at batch 32). Every source is
valid to its end; greedy decoding of exactly `steps` tokens from BOS with no early stop, so every
backend does the same work.

Importing this module sets the thread count (BENCH_THREADS, default 2) for the OpenMP and BLAS
runtimes, which read it once, when a framework loads them; each framework's own pools are set by
its bridge (`limit_threads` in conformance/bridges/<backend>_bridge.py), through
`pin_framework_threads`: nothing here knows a framework.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import time

import numpy as np

from conformance.loading import BUILTIN
from conformance.sources import example_shape, kind_of
from conformance.spec import FAMILIES  # the benchmarks' grid: every family, each with its kind of source

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
# BENCH_TIMER=process: CPU seconds of this process instead of wall seconds. With BENCH_THREADS=1 on
# shared cores it leaves out the time the scheduler gave to other processes (see compare).
TIMER = time.process_time if os.environ.get("BENCH_TIMER") == "process" else time.perf_counter

# Our references that run on a framework, through its bridge (device glue, conformance.bridges), by
# the names --impl knows them by; the NumPy specification runs on none.
BACKENDS = tuple(b for b in BUILTIN if importlib.util.find_spec(f"conformance.bridges.{b}_bridge"))
BATCHES = (1, 32)
DEVICES = ("cpu", "cuda:0")  # conformance.spec.device_name spellings: what --device takes
DECODE_LENGTHS = (32, 64, 128, 256)
STEPS = 128  # the decode length of the fixed-length benchmarks (cached vs recompute)
PEER_STEPS = 32  # the side-by-side runs with peers: the workload their figures were published for

SRC_LEN = 32  # token ids
FEATURES, FRAMES = 80, 1000  # speech: 10 s at 100 frames per second
IMAGE = (3, 112, 112)  # captioning: channels, height, width
VOCAB = 1000
D_MODEL = 256
HEADS = 4
FFN = 1024
LAYERS = 2
BOS = 0
DTYPE = "float32"
SEED = 0


def _pin_environment(n: int) -> None:
    # Standard variables of the OpenMP and BLAS runtimes, read when a framework first loads one
    # (torch's and MXNet's OpenMP among them): set before any framework is imported.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # peers are built from configs, never downloaded


def pin_framework_threads(n: int = THREADS) -> None:
    """n threads for every framework imported so far, through its bridge (conformance.bridges);
    call it after importing a framework and before running anything on it (idempotent)."""
    from conformance import bridges

    bridges.limit_threads(n)


_pin_environment(THREADS)


def spec(family: str, device: str = "cpu"):
    from conformance.spec import ModelSpec

    return ModelSpec(
        family, src_vocab=VOCAB, tgt_vocab=VOCAB, embed_size=D_MODEL, num_hiddens=D_MODEL, num_layers=LAYERS,
        num_heads=HEADS, ffn_num_hiddens=FFN, dropout=0.0, dtype=DTYPE, seed=SEED,
        max_len=max(max(DECODE_LENGTHS) + 1, FRAMES), device=device,
        num_features=FEATURES, channels=IMAGE[0], height=IMAGE[1], width=IMAGE[2],
    )


def source(batch: int, family: str = "transformer") -> tuple[np.ndarray, np.ndarray | None]:
    """(src, src_valid_len), the same for every backend, of the family's kind (conformance/sources.py):
    token ids (batch, SRC_LEN) int64; frames (batch, FRAMES, FEATURES) of unit scale in DTYPE; images
    (batch, *IMAGE) in DTYPE, which have no lengths (None). Every source is valid to its end."""
    rng = np.random.default_rng(SEED)
    kind = kind_of(family)
    if kind == "tokens":
        src = rng.integers(1, VOCAB, size=(batch, SRC_LEN), dtype=np.int64)
        return src, np.full(batch, SRC_LEN, dtype=np.int64)
    shape = example_shape(spec(family))
    if kind == "frames":
        return rng.standard_normal((batch, FRAMES, *shape)).astype(DTYPE), np.full(batch, FRAMES, dtype=np.int64)
    return rng.standard_normal((batch, *shape)).astype(DTYPE), None


def describe() -> str:
    return (f"d_model {D_MODEL}, {HEADS} heads, FFN {FFN}, {LAYERS}+{LAYERS} layers, vocab {VOCAB}, {DTYPE}; "
            f"source: {SRC_LEN} tokens, {FRAMES} frames of {FEATURES} features (speech), "
            f"{'x'.join(map(str, IMAGE))} images (captioning); greedy, no early stop; {THREADS} threads")


def gpu_device_present() -> bool:
    """An NVIDIA device node exists: the cheap test that lets a CPU-only machine skip every cuda
    benchmark without importing a framework (whether a backend sees the GPU is checked in setup)."""
    return os.path.exists("/dev/nvidiactl")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def versions() -> dict:
    found = {}
    for dist in ("torch", "tensorflow-cpu", "tensorflow", "keras", "mxnet", "numpy", "transformers", "ctranslate2",
                 "keras-hub", "gluonnlp"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def machine() -> dict:
    """What a figure was measured on: stated beside every table we publish."""
    return dict(cpu=cpu_model(), cores=len(os.sched_getaffinity(0)), threads=THREADS,
                python=platform.python_version(), versions=versions())
