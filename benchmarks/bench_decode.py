"""Decode-throughput benchmarks (asv): seconds for a fixed amount of work, across backends and devices.

asv treats a lower number as better for every benchmark type, so every figure here is seconds
(a fixed greedy decode, an encoder pass, or seconds per token); tokens per second is derived from
them in reports (benchmarks/plot.py), never tracked, or a slowdown would read as an improvement.

Each combination runs in its own process; `setup` builds the model once per process and warms it
up (tracing, compilation, caches) at the timed shape, so the timed call is steady-state.
Unavailable combinations (no GPU, a backend without `greedy_decode` yet) skip with a reason; a
reference that cannot be imported or built fails (backends.subject).
"""
import itertools

from . import workload as W
from .backends import median_seconds, prepared
from .implementations import asv_impls, asv_loops, impl_call

GRID = [list(W.BACKENDS), list(W.FAMILIES), list(W.BATCHES), list(W.DEVICES)]
GRID_NAMES = ["backend", "family", "batch", "device"]


def cuda_without_gpu(params):
    """asv's skip_params: on a machine with no GPU, every cuda combination is skipped before setup,
    so no framework is imported just to learn that; elsewhere each backend's check decides."""
    return [] if W.gpu_device_present() else [c for c in itertools.product(*params) if any(
        str(p).startswith("cuda") for p in c)]


class _Timed:
    number = 1  # one call is one sample: every call is milliseconds at least
    repeat = (3, 10, 30.0)  # min samples, max samples, max seconds per process
    warmup_time = 0  # setup already warmed up
    timer = W.TIMER
    timeout = 600  # recompute at batch 32 on an eager backend runs for minutes


class GreedyDecode(_Timed):
    """Greedy decoding with the key/value cache or recurrent state, by decode length.

    time_greedy_decode: seconds to decode `steps` tokens from source tokens (encoder included).
    track_seconds_per_token: (decode - encode) / (batch * steps), median of 5 calls: the cost
    of one more token, flat for recurrent decoders, growing slowly with the Transformer's cache.
    """

    params = GRID + [list(W.DECODE_LENGTHS)]
    param_names = GRID_NAMES + ["steps"]
    skip_params = cuda_without_gpu(params)

    def setup(self, backend, family, batch, device, steps):
        self.subject = prepared(backend, family, device, batch, "greedy_decode", "encode", steps=steps)
        self.src, self.valid = W.source(batch, family)

    def time_greedy_decode(self, backend, family, batch, device, steps):
        self.subject.greedy(self.src, self.valid, steps)

    def track_seconds_per_token(self, backend, family, batch, device, steps):
        decode = median_seconds(lambda: self.subject.greedy(self.src, self.valid, steps))
        encode = median_seconds(lambda: self.subject.encode(self.src, self.valid))
        return max(decode - encode, 0.0) / (batch * steps)

    track_seconds_per_token.unit = "seconds"

    def track_warmup_seconds(self, backend, family, batch, device, steps):
        """The first decode of this process, in setup: tracing and compiling (a torch.compile'd loop; on
        disk caches make a later process's shorter), never part of time_greedy_decode."""
        return self.subject.warmup_seconds[("greedy_decode", batch, steps)]

    track_warmup_seconds.unit = "seconds"


class CachedVsRecompute(_Timed):
    """The same STEPS greedy tokens with the cache, and recomputing the whole prefix every step."""

    params = GRID
    param_names = GRID_NAMES
    skip_params = cuda_without_gpu(params)

    def setup(self, backend, family, batch, device):
        self.subject = prepared(backend, family, device, batch, "greedy_decode", "recompute_greedy_decode",
                                steps=W.STEPS)
        self.src, self.valid = W.source(batch, family)

    def time_cached_decode(self, backend, family, batch, device):
        self.subject.greedy(self.src, self.valid, W.STEPS)

    def time_recompute_decode(self, backend, family, batch, device):
        self.subject.recompute(self.src, self.valid, W.STEPS)


class Encode(_Timed):
    """One encoder pass over the (batch, 32) source."""

    params = GRID
    param_names = GRID_NAMES
    skip_params = cuda_without_gpu(params)

    def setup(self, backend, family, batch, device):
        self.subject = prepared(backend, family, device, batch, "encode")
        self.src, self.valid = W.source(batch, family)

    def time_encode(self, backend, family, batch, device):
        self.subject.encode(self.src, self.valid)


class PeakMemory:
    """Peak resident memory of a process that builds the model and decodes STEPS tokens once.

    No warm-up: asv reads the process's lifetime maximum, so one method per process sees only
    its own decode (compilation included, which is part of what a first call costs).
    """

    params = GRID
    param_names = GRID_NAMES
    skip_params = cuda_without_gpu(params)
    timeout = 600

    def setup(self, backend, family, batch, device):
        self.subject = prepared(backend, family, device, batch)
        self.src, self.valid = W.source(batch, family)
        self.subject.check("greedy_decode", "recompute_greedy_decode")

    def peakmem_cached_decode(self, backend, family, batch, device):
        self.subject.greedy(self.src, self.valid, W.STEPS)

    def peakmem_recompute_decode(self, backend, family, batch, device):
        self.subject.recompute(self.src, self.valid, W.STEPS)


class ImplDecode(_Timed):
    """Any implementation by its --impl name (BENCH_IMPLS, comma-separated; default our references):
    seconds to decode `steps` greedy tokens from source tokens by the interface loop (through the
    adapter, conformance.decoding), eager or compiled, or the native loop (the factory module's
    greedy_decode); BENCH_LOOPS chooses the loops (benchmarks/implementations.py).

        BENCH_IMPLS=mypkg.models:make_model ASV_PYTHONPATH=$PWD asv run --python=same --quick --bench ImplDecode
    """

    params = [asv_impls(), list(W.FAMILIES), list(W.BATCHES), list(W.DEVICES), list(W.DECODE_LENGTHS), asv_loops()]
    param_names = ["impl", "family", "batch", "device", "steps", "loop"]
    skip_params = cuda_without_gpu(params)

    def setup(self, impl, family, batch, device, steps, loop):
        self.decode = impl_call(impl, family, device, batch, loop, steps)
        if loop == "interface-compiled" and self.decode.how.startswith("eager"):
            raise NotImplementedError(f"interface-compiled: {self.decode.how}")  # never an eager figure labelled compiled

    def time_decode(self, impl, family, batch, device, steps, loop):
        self.decode()
