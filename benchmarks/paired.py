"""Paired timing for the gate: one decode at two commits, called in turn, a ratio per pair.

Each commit runs in a process of its own (that commit's code first on its import path), which
builds the model once, warms it up, then times one decode per request on the workload's clock
(CPU seconds with BENCH_TIMER=process). The parent asks the two in turn, alternating which goes
first, and keeps each pair's ratio head / base. Other jobs' load comes and goes over seconds and
can double a decode's CPU time (cold caches after every preemption); two calls a few
milliseconds apart see the same load, so the median of the pairs' ratios holds still where the
ratio of two runs' medians, taken minutes apart, does not (docs/benchmarks.md).

The sides import this package from where the parent has it (one benchmark code for both commits)
and everything else, the code under test, from their commit's worktree first.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import queue
import statistics
import subprocess
import sys
import tempfile
import threading

# A side's process: this package loaded from its directory under its own name, without putting that
# directory's parent on sys.path (in a checkout of the suite it also holds impls/, which must come
# from the commit under test), then worker() with the case.
BOOT = """
import importlib, importlib.util, sys
package, where = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location(package, where + "/__init__.py", submodule_search_locations=[where])
sys.modules[package] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sys.modules[package])
sys.exit(importlib.import_module(package + ".paired").worker(sys.argv[3:]))
"""
PACKAGE = pathlib.Path(__file__).resolve().parent

ALPHA = 0.01  # a slower verdict also needs the pairs to lean that way: one-sided sign test, p < ALPHA
WARMUP_PAIRS = 2  # untimed: the first calls after the build pay for caches and allocations


@dataclasses.dataclass(frozen=True)
class Case:
    impl: str
    family: str
    batch: int
    loop: str
    steps: int
    device: str = "cpu"

    def __str__(self):
        where = "" if self.device == "cpu" else f" {self.device}"
        return f"{self.impl} {self.family} B{self.batch} {self.loop} {self.steps}{where}"


@dataclasses.dataclass
class Result:
    case: Case
    status: str  # "compared", "skipped", "failed at head", "failed at base", "failed"
    reason: str = ""
    base: list[float] = dataclasses.field(default_factory=list)  # seconds per decode
    head: list[float] = dataclasses.field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Median over pairs of head / base."""
        return statistics.median(h / b for b, h in zip(self.base, self.head))

    @property
    def p_slower(self) -> float:
        return sign_test(h / b for b, h in zip(self.base, self.head))

    def slower(self, factor: float) -> bool:
        return self.status == "failed at head" or (
            self.status == "compared" and self.ratio > factor and self.p_slower < ALPHA)


def sign_test(ratios) -> float:
    """One-sided p-value that head is slower: P(X >= k) for X ~ Binomial(n, 1/2), k pairs above 1
    of n that differ."""
    ratios = [r for r in ratios if r != 1]
    n, k = len(ratios), sum(r > 1 for r in ratios)
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n if n else 1.0


class WorkerError(RuntimeError):
    def __init__(self, side: str, message: str):
        super().__init__(message)
        self.side = side  # "base" or "head": whose code failed or hung


class Side:
    """One commit's worker process: started at once, built and warmed up by `ready()`. Every answer
    must come within `timeout` seconds, or the process is killed: a model that hangs fails its side."""

    def __init__(self, name: str, case: Case, env: dict, cwd, timeout: float):
        self.name, self.timeout = name, timeout
        self.log = tempfile.TemporaryFile("w+")  # its stderr: the traceback of a failure, the model's prints
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BOOT, __package__, str(PACKAGE), case.impl, case.family, str(case.batch), case.loop,
             str(case.steps), case.device], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env, cwd=cwd,
            text=True)
        self.lines = queue.Queue()  # its stdout, read by a thread so that waiting for a line can time out
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")  # end of output: the process is gone

    def _line(self) -> str:
        try:
            line = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            self.proc.kill()
            raise WorkerError(self.name, f"no answer within {self.timeout:g} s (--timeout): the model hangs, "
                                         "or needs a longer limit") from None
        if not line:
            self.proc.wait()
            self.log.seek(0)
            raise WorkerError(self.name, f"exit {self.proc.returncode}: {self.log.read()[-3000:].strip()}")
        return line.strip()

    def ready(self) -> str:
        """'' when ready to time, else why the case is unavailable (a skip). WorkerError if it failed."""
        line = self._line()
        return "" if line == "ready" else line.removeprefix("unavailable ")

    def time(self) -> float:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return float(self._line())

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def measure(case: Case, envs: dict, cwd, min_pairs: int, max_pairs: int, seconds: float, timeout: float) -> Result:
    """Time `case` at "base" and "head" (envs: their environments) in alternating pairs: at least
    `min_pairs`, then more until `seconds` of decoding or `max_pairs`; each side's build, and each of
    its decodes, within `timeout` seconds."""
    sides = {name: Side(name, case, env, cwd, timeout) for name, env in envs.items()}  # both build at once
    try:
        state = {}
        for name, side in sides.items():
            try:
                state[name] = side.ready()
            except WorkerError as exc:
                state[name] = exc
        failed = [name for name, s in state.items() if isinstance(s, WorkerError)]
        if failed:
            status = "failed" if len(failed) == 2 else f"failed at {failed[0]}"
            return Result(case, status, "; ".join(f"{name}: {state[name]}" for name in failed))
        skipped = {name: s for name, s in state.items() if s}
        if skipped:  # declined, no native loop: said once if both sides say the same
            return Result(case, "skipped", "; ".join(dict.fromkeys(f"{s}" for s in skipped.values())))
        result = Result(case, "compared")
        spent, pair = 0.0, -WARMUP_PAIRS
        while pair < min_pairs or (pair < max_pairs and spent < seconds):
            order = ("base", "head") if pair % 2 == 0 else ("head", "base")
            timed = {name: sides[name].time() for name in order}
            if pair >= 0:
                result.base.append(timed["base"])
                result.head.append(timed["head"])
                spent += timed["base"] + timed["head"]
            pair += 1
        return result
    except WorkerError as exc:  # a side that failed, or hung, while timing: a failure of its commit
        return Result(case, f"failed at {exc.side}", f"{exc.side}: {exc}")
    finally:
        for side in sides.values():
            side.close()


def worker(argv) -> int:
    """One side: build and warm up the case, say "ready" (or "unavailable REASON"), then answer each
    line of stdin with the seconds of one decode."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the model prints goes to stderr, never into the protocol
    from .backends import Unavailable
    from .implementations import impl_call
    from .workload import TIMER

    impl, family, batch, loop, steps, device = argv
    try:
        decode = impl_call(impl, family, device, int(batch), loop, int(steps))
    except Unavailable as exc:
        protocol.write("unavailable " + " ".join(str(exc).split()) + "\n")
        return 0
    protocol.write("ready\n")
    for _ in sys.stdin:
        start = TIMER()
        decode()
        protocol.write(f"{TIMER() - start!r}\n")
    return 0
