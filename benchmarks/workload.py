"""The fixed decode workload every benchmark and peer runs, and the thread pinning, set once.

Model: d_model 256, 4 heads, FFN 1024, 2 encoder + 2 decoder layers, vocabularies of 1000,
float32, eval mode. Input: source length 32 (every position valid), greedy decoding of exactly
`steps` tokens from BOS with no early stop, so every backend does the same work.

Importing this module pins the thread count of every framework (BENCH_THREADS, default 2) before
any of them is imported: the OpenMP / MKL / TensorFlow / MXNet pools read their environment
variables once, at load.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time

import numpy as np

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
# BENCH_TIMER=process: CPU seconds of this process instead of wall seconds. With BENCH_THREADS=1 on
# shared cores it leaves out the time the scheduler gave to other processes (see compare.py).
TIMER = time.process_time if os.environ.get("BENCH_TIMER") == "process" else time.perf_counter

BACKENDS = ("torch", "tensorflow", "mxnet")
FAMILIES = ("rnn", "gru", "lstm", "bahdanau", "transformer", "mixed")
BATCHES = (1, 32)
DEVICES = ("cpu", "cuda")
DECODE_LENGTHS = (32, 64, 128, 256)
STEPS = 128  # the decode length of the fixed-length benchmarks (cached vs recompute)
PEER_STEPS = 32  # the side-by-side runs with peers: the workload their figures were published for

SRC_LEN = 32
VOCAB = 1000
D_MODEL = 256
HEADS = 4
FFN = 1024
LAYERS = 2
BOS = 0
DTYPE = "float32"
SEED = 0


def _pin_environment(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MXNET_OMP_MAX_THREADS",
                "TF_NUM_INTRAOP_THREADS"):
        os.environ[var] = str(n)
    # One inter-op thread: a greedy loop has no independent ops to overlap, only contention to add.
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ["MXNET_CPU_WORKER_NTHREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # peers are built from configs, never downloaded


def pin_framework_threads(n: int = THREADS) -> None:
    """Apply the thread count through the APIs of frameworks already imported (idempotent)."""
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        try:  # only possible before TensorFlow's runtime starts; the environment covers the rest
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass


_pin_environment(THREADS)


def spec(family: str):
    from conformance.spec import ModelSpec

    return ModelSpec(
        family, src_vocab=VOCAB, tgt_vocab=VOCAB, embed_size=D_MODEL, num_hiddens=D_MODEL, num_layers=LAYERS,
        num_heads=HEADS, ffn_num_hiddens=FFN, dropout=0.0, dtype=DTYPE, seed=SEED,
        max_len=max(DECODE_LENGTHS) + 1,
    )


def source(batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(src (batch, SRC_LEN) int64, src_valid_len (batch,) int64): the same tokens for every backend."""
    rng = np.random.default_rng(SEED)
    src = rng.integers(1, VOCAB, size=(batch, SRC_LEN), dtype=np.int64)
    return src, np.full(batch, SRC_LEN, dtype=np.int64)


def describe() -> str:
    return (f"d_model {D_MODEL}, {HEADS} heads, FFN {FFN}, {LAYERS}+{LAYERS} layers, vocab {VOCAB}, {DTYPE}; "
            f"source length {SRC_LEN}; greedy, no early stop; {THREADS} threads")


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
