"""Models that crashed or hung, shared by every process of one run (pytest -n's workers too).

A contract whose model already crashed a process or hung is reported at once as not run,
instead of crashing worker after worker or waiting out one timeout per contract. The record
is a directory of small files, so a worker started after a crash reads it as well.
"""
from __future__ import annotations

import os
import pathlib
import re
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

    def crash_log(self, worker: str) -> pathlib.Path:
        """Where a worker's faulthandler writes the signal and stack of a crash."""
        return self.dir / f"{worker}.crash"


FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<function>\S+)')


def crash_summary(log: str) -> str:
    """'Segmentation fault in forward (faulty.py:40)' from a faulthandler dump: the signal and the
    innermost frame, which is the model's own code when the model crashed."""
    first = log.strip().splitlines()[0] if log.strip() else ""
    signal = first.removeprefix("Fatal Python error: ") if first.startswith("Fatal Python error") else "crashed"
    frame = FRAME.search(log, log.find("Current thread"))  # other threads (execnet's) are dumped too
    if not frame:
        return signal
    return f"{signal} in {frame['function']} ({pathlib.Path(frame['file']).name}:{frame['line']})"


def result_from_nodeid(nodeid: str, impl_names) -> Result | None:
    """A contract's result from its node id alone: the controller has no items to ask."""
    path, _, name = nodeid.partition("::")
    function, _, params = name.partition("[")
    impl = max((i for i in impl_names if params.startswith(f"{i}-")), key=len, default=None)
    if impl is None:
        return None
    family, _, case = params[len(impl) + 1 :].rstrip("]").partition("-")
    area = pathlib.Path(path).stem.removeprefix("test_")
    return Result(nodeid, impl, family, area, function.removeprefix("test_"), case, "", "", 0.0)
