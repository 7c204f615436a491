"""Models that crashed or hung, shared by every process of one run (pytest -n's workers, and the
processes a supervised serial run goes on in, too).

A contract whose model already crashed a process or hung is reported at once as not run,
instead of crashing worker after worker or waiting out one timeout per contract. The record
is a directory of small files, so a worker started after a crash reads it as well.

A model stuck in native code never returns to Python, where the timeout's `Hung` is raised: the
watchdog here ends its process a little later, after writing every thread's stack for the
process watching it (conformance/supervisor.py, or xdist's controller) to report the hang.
"""
from __future__ import annotations

import faulthandler
import json
import os
import pathlib
import re
import signal
import zlib

import pytest
from _pytest.outcomes import OutcomeException

from .report import Result


class NotRun(pytest.skip.Exception):
    """A contract whose model already crashed or hung: reported at once instead of run."""


class Hung(OutcomeException):
    """A contract ran past --conformance-timeout. Neither an Exception nor pytest's Failed, so no
    `except Exception` (a model's) and no Hypothesis retry of the example can swallow it and wait on;
    an OutcomeException, so pytest's fixtures and reports treat it as a test outcome."""


class Faults:
    def __init__(self, directory: str):
        self.dir = pathlib.Path(directory)

    def _file(self, key: str) -> pathlib.Path:
        return self.dir / f"{zlib.crc32(key.encode()):08x}.fault"

    def record(self, key: str, what: str) -> None:
        """The first record of a key stands: it names the contract where the fault happened."""
        path = self._file(key)
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(what)
            tmp.replace(path)  # atomic: a reader never sees half a message

    def find(self, *keys: str) -> str | None:
        for key in keys:
            path = self._file(key)
            if path.exists():
                return path.read_text()
        return None

    def write_selected(self, identities: list[dict]) -> None:
        """What each selected contract's node id is about (see plugin.identity): the same in every
        process that collects, so whichever writes last writes what the others did."""
        tmp = self.dir / f"selected.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({entry["nodeid"]: entry for entry in identities}))
        tmp.replace(self.dir / "selected.json")

    def selected(self) -> dict[str, dict]:
        path = self.dir / "selected.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def result_of_nodeid(self, nodeid: str) -> Result:
        """A contract's result, without verdict, from its node id alone: looked up in what the
        collecting processes recorded (a remote worker's are not here: the result then names no
        implementation, and still fails the run)."""
        entry = self.selected().get(nodeid)
        if entry is None:
            path, _, name = nodeid.partition("::")
            entry = {"nodeid": nodeid, "impl": "", "family": "", "area": pathlib.Path(path).stem.removeprefix("test_"),
                     "contract": name.partition("[")[0].removeprefix("test_"), "case": ""}
        return Result(**entry, outcome="", message="", duration=0.0)

    def crash_log(self, worker: str) -> pathlib.Path:
        """Where a worker's faulthandler writes the signal and stack of a crash."""
        return self.dir / f"{worker}.crash"


class Watchdog:
    """The hard deadline behind --conformance-timeout. The timeout raises `Hung` in the main thread
    between two Python instructions; a model stuck inside native code (a lock taken twice, a C loop)
    never reaches one. faulthandler's watchdog thread needs no GIL: `grace(seconds)` after the
    timeout it writes every thread's stack to `file` and ends the process (exit status 1). Off until
    a process that runs models and has a watcher sets `file` (the watcher reads it: `hang_summary`)."""

    def __init__(self):
        self.file = None

    @staticmethod
    def grace(seconds: float) -> float:
        return min(seconds, 10.0)

    def arm(self, seconds: float) -> None:
        if self.file is not None:
            faulthandler.dump_traceback_later(seconds + self.grace(seconds), exit=True, file=self.file)

    def disarm(self) -> None:
        if self.file is not None:
            faulthandler.cancel_dump_traceback_later()


WATCHDOG = Watchdog()

FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<function>\S+)')
TIMEOUT = re.compile(r"^Timeout \((?P<after>[0-9:.]+)\)!", re.M)  # how faulthandler's watchdog dump begins


def main_frame(log: str) -> str:
    """' in forward (faulty.py:40)': the innermost Python frame of the thread that crashed (faulthandler
    marks it 'Current thread'), or where none is marked (a watchdog's dump) of the thread running
    pytest; '' if the dump has none."""
    blocks = re.split(r"^(?=(?:Current thread|Thread) 0x)", log, flags=re.M)[1:]
    block = (next((b for b in blocks if b.startswith("Current thread")), None)
             or next((b for b in blocks if "_pytest" in b), None) or (blocks[0] if blocks else log))
    frame = FRAME.search(block)
    return f" in {frame['function']} ({pathlib.Path(frame['file']).name}:{frame['line']})" if frame else ""


def crash_summary(log: str, status: int | None = None) -> str:
    """'Segmentation fault in forward (faulty.py:40)' from a faulthandler dump: the signal and the
    innermost frame, which is the model's own code when the model crashed. Where faulthandler saw
    nothing (os._exit, SIGKILL), what the process's exit `status` (as subprocess gives it) says."""
    first = log.strip().splitlines()[0] if log.strip() else ""
    what = first.removeprefix("Fatal Python error: ") if first.startswith("Fatal Python error") else describe_exit(status)
    return what + main_frame(log)


def hang_summary(log: str, timeout: float) -> str | None:
    """What a watchdog's dump says (see Watchdog), or None if `log` is not one."""
    if not TIMEOUT.search(log):
        return None
    return (f"did not finish within {timeout:g}s (--conformance-timeout), stuck in native code where Python cannot stop "
            f"it{main_frame(log)}: the watchdog ended its process {Watchdog.grace(timeout):g}s later")


def describe_exit(status: int | None) -> str:
    """How a process ended, from its exit status (negative: the signal that killed it)."""
    if status is None:
        return "crashed"
    if status < 0:
        name = signal.Signals(-status).name if -status in signal.valid_signals() else f"signal {-status}"
        return f"killed by {name}" + (" (as the kernel's out-of-memory killer does)" if -status == signal.SIGKILL else "")
    return f"exited with status {status} before it finished" + (" (os._exit(0)?)" if status == 0 else "")


def exit_status(node) -> int | None:
    """The exit status of an xdist worker that died, where its process can be asked (a local one)."""
    popen = getattr(getattr(getattr(node, "gateway", None), "_io", None), "popen", None)  # execnet's local subprocess
    try:
        return popen.wait(timeout=5) if popen is not None else None
    except Exception:  # noqa: BLE001 (a remote worker, or one that did not end: nothing to say)
        return None


