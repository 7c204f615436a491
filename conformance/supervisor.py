"""A serial run watched from outside: no exit 0 without a verdict for every contract.

pytest's own process forks before the session starts: the child runs the session and the models,
the parent only waits for it. A model that ends the child - os._exit(0) included, a segfault, a
SIGKILL from the out-of-memory killer, the watchdog ending a hang in native code (faults.Watchdog)
- cannot end the run with it. The parent reads what the child recorded as it went (a journal: each
contract's start and result), gives the contract that was running its verdict (crashed, or hung),
and goes on with the contracts that have none in a new child, where that model's other contracts
are reported as not run: what pytest -n's workers do, without their start-up. Where no contract can
be named (a crash in the suite itself), the parent writes the report, every contract without a
verdict "not run", and the run is red.

A SIGTERM (an outer `timeout`) reaches the child, which ends the session and writes the report; a
child that does not end within GRACE seconds (stuck in native code, where Python's signal handlers
never run) is ended by the parent, which writes the report from the journal: the run ends either way.

Not supervised: pytest -n (its controller watches the workers), pytest.main() called from Python
(the process is its caller's), a process that already runs threads of its own (a fork would lose
them), systems without fork, and --no-conformance-supervisor (for debuggers and profilers that
follow one process).
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import faulthandler
import functools
import json
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import threading
import time

import pytest
from _pytest.config import create_terminal_writer

from . import loading
from .faults import WATCHDOG, Faults, crash_summary, describe_exit, hang_summary, main_frame
from .report import FAILING, ImplInfo, Report, ReportInUse, ReportLock, Result
from .session import RESULT, replay, split_list
from .spec import device_name

SUPERVISION = pytest.StashKey["Supervision"]()
GRACE = 5.0  # seconds a child has to end after SIGTERM or Ctrl-C before it is ended


@dataclasses.dataclass
class Supervision:
    """What a supervised child knows of its parent: the run's directory (fault records, what was
    selected, the journal, the crash logs), which child it is, and when the run started."""

    dir: pathlib.Path
    attempt: int = 0  # 0: the first child; n: the one that goes on after n ended early
    started: float = dataclasses.field(default_factory=time.time)
    crash_file: object = None  # the child's open crash log

    @property
    def crash_log(self) -> pathlib.Path:
        return self.dir / f"child{self.attempt}.crash"

    @functools.cached_property
    def journal(self) -> Journal:
        return Journal(self.dir / "journal.jsonl")


class Journal:
    """What the children did, one JSON object a line, appended as it happens and flushed at once, so
    the parent reads it whole up to the moment a child ended: {"child": n} (the n-th child starts),
    {"start": nodeid} and {"end": nodeid}, {"properties": [...]} (what a test report carries to the
    report), {"trying": [impl, family]} and {"tried": ...} (an implementation imported, or a model
    built and first tried; family None: imported), {"crash": line} (the parent's), {"finished":
    exit status} (the session's), {"shutdown": true} (pytest's last act)."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.file = None

    def write(self, **event) -> None:
        if self.file is None:
            self.file = open(self.path, "a", encoding="utf-8")
        self.file.write(json.dumps(event) + "\n")
        self.file.flush()

    def events(self) -> list[dict]:
        events = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    events.append(json.loads(line))
                except ValueError:  # the last line, cut short by the child's end
                    break
        return events


def supervised(config) -> Supervision | None:
    return config.stash.get(SUPERVISION, None)


def owns_process(config) -> bool:
    """Whether this process is the command line's pytest run (not pytest.main([...]) called from a
    program, nor an xdist worker) and runs models (not xdist's controller): whether its run may end it."""
    option = config.option
    return bool(
        config.getoption("impl") and not hasattr(config, "workerinput") and not getattr(option, "numprocesses", None)
        and getattr(option, "dist", "no") == "no" and not getattr(option, "tx", None)
        and not option.collectonly and not option.help and not getattr(option, "version", False)
        and config.invocation_params.args == tuple(sys.argv[1:])
        and os.path.basename(sys.argv[0]) in ("pytest", "py.test", "__main__.py")
    )


def wanted(config) -> bool:
    """Whether this run is one to supervise (see the module's docstring)."""
    return owns_process(config) and not why_not(config)


def why_not(config) -> str:
    """Why a command-line serial run is not supervised, or ''."""
    if not config.getoption("conformance_supervisor"):
        return "--no-conformance-supervisor"
    if not hasattr(os, "fork"):
        return f"no fork on {sys.platform}"
    if threading.active_count() > 1:
        return f"{threading.active_count() - 1} thread(s) already running, which a fork would lose"
    return ""


def supervise(config) -> int | None:
    """In pytest's process, before the session: None in the child, which runs the session; in the
    parent, once the children are done, the run's exit code."""
    run = Supervision(pathlib.Path(tempfile.mkdtemp(prefix="conformance-run-")))
    parent = Parent(config, run)
    try:
        while True:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                become_child(config, run)
                return None
            code = parent.watch(pid)
            if code is not None:
                return code
            run = dataclasses.replace(run, attempt=run.attempt + 1)
            parent.run = run
    finally:
        if os.getpid() == parent.pid:
            shutil.rmtree(run.dir, ignore_errors=True)


def become_child(config, run: Supervision) -> None:
    parent = os.getppid()
    if sys.platform.startswith("linux"):  # the child must not outlive a parent killed outright
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(2)
    config.stash[SUPERVISION] = run
    run.journal.write(child=run.attempt)
    # Where a crash's signal and stack go from now on (the implementations are imported next), and
    # the watchdog's dump of a hang in native code: read by the parent when the child ends early.
    run.crash_file = run.crash_log.open("w")
    faulthandler.enable(run.crash_file)
    WATCHDOG.file = run.crash_file
    # pytest's last act, however the session went (a usage error included): a child that gets here
    # ended as pytest ends, and its exit status is pytest's.
    config.add_cleanup(lambda: run.journal.write(shutdown=True))


class Parent:
    """Waits for a child and answers for it when it ends early."""

    def __init__(self, config, run: Supervision):
        self.config = config
        self.run = run
        self.pid = os.getpid()
        self.crashed = False  # a child ended early: the run cannot be green
        self.interrupted = ""  # the signal that asked the run to end, if one did

    def watch(self, child: int) -> int | None:
        """The run's exit code once `child` ended, or None to go on in a new child."""
        status = self.wait(child)
        events = self.run.journal.events()
        finished = next((e["finished"] for e in reversed(events) if "finished" in e), None)
        if finished is None and status >= 0 and any("shutdown" in e for e in events):
            finished = status  # it stopped before its session ran (a usage error): its own exit code
        if finished is None:
            return self.answer_for(status, events)
        if status != 0 and status != finished:
            self.say(f"the process running the models {describe_exit(status)} after its session finished", yellow=True)
        if self.crashed and finished in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            return pytest.ExitCode.TESTS_FAILED  # a child before it ended early
        return finished

    def wait(self, child: int) -> int:
        """The child's exit status as subprocess gives it (negative: the signal that ended it). A
        SIGTERM or Ctrl-C asks the child to end the session (SIGTERM is passed on: an outer timeout
        may have signalled this process alone); a child that has not ended GRACE seconds later is
        ended: SIGABRT first, whose faulthandler dump says where it was stuck, then SIGKILL."""
        deadline = None

        def ask_to_end(signum, frame):
            nonlocal deadline
            self.interrupted = self.interrupted or signal.Signals(signum).name
            if signum == signal.SIGTERM:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)
            deadline = deadline or time.monotonic() + GRACE
            raise Signalled  # out of a blocking waitpid, which Python would otherwise resume

        previous = {s: signal.signal(s, ask_to_end) for s in (signal.SIGINT, signal.SIGTERM)}
        escalation = iter((signal.SIGABRT, signal.SIGKILL))
        try:
            while True:
                try:
                    finished, status = os.waitpid(child, 0 if deadline is None else os.WNOHANG)
                    if finished:
                        return os.waitstatus_to_exitcode(status)
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, next(escalation, signal.SIGKILL))
                    deadline = time.monotonic() + 2
                except Signalled:
                    continue
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def answer_for(self, status: int, events: list[dict]) -> int | None:
        """The child ended before its session finished: give the contract it was running its
        verdict and go on (None), or, where that cannot be, end the run with a report saying why."""
        self.crashed = True
        run, timeout = self.run, self.config.getoption("conformance_timeout")
        faults = Faults(run.dir)
        selected = faults.selected()
        log = run.crash_log.read_text(errors="replace") if run.crash_log.exists() else ""
        hang, what = hang_summary(log, timeout), crash_summary(log, status)
        where = Culprit.of(events, selected)
        if self.interrupted:
            running = f" in {where.identity['nodeid']}" if where.identity else ""
            stuck = f" (stuck{main_frame(log)})" if main_frame(log) else ""
            ended = (f"did not end within {GRACE:g}s{stuck} and was ended" if status in (-signal.SIGABRT, -signal.SIGKILL)
                     else what)
            return self.end(events, selected, f"the run was interrupted by {self.interrupted}{running}; the process running "
                                              f"the models {ended}", interrupted=True)
        if where.importing:  # no contract of it was collected: the next child reports it unusable
            faults.record(f"{where.importing}@import", f"it crashed the process running the models while it was imported ({what})")
            self.say(f"--impl={where.importing} crashed the process running the models while it was imported: {what}; "
                     "the run goes on in a new process", red=True)
            return None
        if where.identity is None:
            return self.end(events, selected, f"the process running the models {what}")
        identity = where.identity
        contract, impl, family = identity["contract"], identity["impl"], identity["family"]
        if hang:
            result = Result(**identity, outcome="hung", message=f"[{contract}] {hang}", duration=0.0)
            faults.record(f"{impl}/{family}", f"not run: {impl}-{family} hung in {contract} (in native code)")
            later = f"{impl}'s other {family} contracts are not run"
        else:
            result = Result(**identity, outcome="crashed",
                            message=f"[{contract}] crashed the process running the models{where.when}: {what}", duration=0.0)
            faults.record(impl, f"not run: {impl} crashed the process running the models in {contract} ({what})")
            later = f"{impl}'s other contracts are not run"
        result.reproduce = reproduce_line(self.config, identity)
        run.journal.write(properties=[[RESULT, dataclasses.asdict(result)]])
        if not hang:
            run.journal.write(crash=f"{identity['nodeid']}: {what}")
        events = run.journal.events()
        maxfail = self.config.getoption("maxfail")
        if maxfail and sum(r.outcome in FAILING for r in results(events)) >= maxfail:  # -x, --maxfail
            self.say(f"{identity['nodeid']}: {result.message}; stopping after {maxfail} failure(s) (--maxfail)", red=True)
            return self.end(events, selected, "", fill=False)
        if not set(selected) - {r.nodeid for r in results(events)}:
            return self.end(events, selected, "")
        self.say(f"{identity['nodeid']}: {result.message}; {later}; the run goes on in a new process", red=True)
        return None

    def end(self, events: list[dict], selected: dict, cause: str, interrupted: bool = False, fill: bool = True) -> int:
        """The run's end, written by the parent: every selected contract without a verdict is not run
        because of `cause` (unless not to `fill`: the report then counts them as without a verdict);
        the report says so, the terminal shows the matrix, and the run is red."""
        report = recovered_report(self.config, events, self.run.started)
        for nodeid, entry in selected.items():
            if fill and nodeid not in {r.nodeid for r in report.results}:
                report.add(Result(**entry, outcome="not run", message=f"not run: {cause}", duration=0.0))
        report.selected = len(selected) or None
        report.status = "interrupted" if interrupted else ("crashed" if cause else "finished")
        report.ended = cause  # why, in the INCOMPLETE line
        if cause:
            self.say(cause, red=True)
        tw = create_terminal_writer(self.config)
        tw.sep("=", "conformance report")
        tw.write(report.render_terminal(width=max(tw.fullwidth, 100), color=tw.hasmarkup))
        path = self.config.getoption("conformance_report")
        if path:
            self.write(report, path, tw)
        failed = any(r.outcome in FAILING for r in report.results) or report.missing() or bool(cause)
        return pytest.ExitCode.INTERRUPTED if interrupted else (pytest.ExitCode.TESTS_FAILED if failed else pytest.ExitCode.OK)

    def write(self, report: Report, path: str, tw) -> None:
        lock = ReportLock(path)
        try:
            lock.acquire()
            for written in report.write(path):
                tw.line(f"conformance report written to {written}")
        except (ReportInUse, OSError) as exc:
            problem = f"another run ({exc}) is writing it" if isinstance(exc, ReportInUse) else (exc.strerror or str(exc))
            tw.line(f"ERROR: cannot write the conformance report {path}: {problem}", red=True, bold=True)
        finally:
            lock.release()

    def say(self, line: str, **markup) -> None:
        tw = create_terminal_writer(self.config)
        tw.line()  # the child may have ended in the middle of a line (pytest -q's dots)
        tw.line(f"conformance: {line}", bold=True, **markup)


def results(events: list[dict]) -> list[Result]:
    return [Result(**value) for e in events for name, value in e.get("properties", []) if name == RESULT]


@dataclasses.dataclass
class Culprit:
    """Where a child was when it ended: in a contract (`identity`, what its result is about), in
    the first try of a model (`identity` of its first contract, and `when` says so), importing an
    implementation (`importing`), or nowhere a model can be blamed (all empty)."""

    identity: dict | None = None
    when: str = ""
    importing: str = ""

    @classmethod
    def of(cls, events: list[dict], selected: dict) -> Culprit:
        done = {r.nodeid for r in results(events)}
        events = events[max((i for i, e in enumerate(events) if "child" in e), default=0):]  # the last child's
        ended = {e["end"] for e in events if "end" in e}
        running = next((e["start"] for e in reversed(events) if "start" in e), None)
        if running in selected and running not in ended and running not in done:
            return cls(selected[running])
        tried = {tuple(e["tried"]) for e in events if "tried" in e}
        impl, family = next((tuple(e["trying"]) for e in reversed(events) if "trying" in e and tuple(e["trying"]) not in tried),
                            (None, None))
        if impl is not None and family is None:
            return cls(importing=impl)
        first = next((entry for nodeid, entry in selected.items()
                      if (entry["impl"], entry["family"]) == (impl, family) and nodeid not in done), None)
        return cls(first, " while the suite first tried the model") if first else cls()


class Signalled(Exception):
    """A SIGTERM or SIGINT reached the parent while it waited."""


def recovered_report(config, events: list[dict], started: float) -> Report:
    """The report as the journal has it: what the child that ended would have written next."""
    report = Report(config.getoption("conformance_seed"))
    report.started = started
    for name in dict.fromkeys(split_list(config.getoption("impl"))):
        report.impls[name] = ImplInfo(name, loading.BUILTIN.get(name, name))
    replay(events, report)
    return report


def reproduce_line(config, identity: dict) -> str:
    from . import plugin  # the plugin's one way to say it

    return plugin.reproduce_line(identity["nodeid"], identity["impl"], config.getoption("conformance_seed"),
                                 config.getoption("reference"), device_name(config.getoption("device")))


# pytest's terminal outcome for each of the report's: a crash or hang is a failure to pytest -n too.
PYTEST_OUTCOME = {"crashed": "failed", "hung": "failed", "failed": "failed", "error": "error", "not run": "skipped",
                  "skipped": "skipped", "passed": "passed", "xfailed": "xfailed", "xpassed": "xpassed"}


def count_earlier_verdicts(terminalreporter, session) -> None:
    """A child that goes on after another ended runs only the contracts without a verdict, and pytest
    counts only those: the earlier children's verdicts are added to its counts (and to -r's summary),
    so that a run with a crash ends "1 failed, 8 passed, 7 skipped", not "8 passed, 7 skipped"."""
    for result in session.report.results:
        if result.nodeid in session.done:
            key = PYTEST_OUTCOME[result.outcome]
            outcome = {"error": "failed", "xfailed": "skipped", "xpassed": "passed"}.get(key, key)
            path = result.nodeid.split("::", 1)[0]
            report = pytest.TestReport(result.nodeid, (path, None, result.nodeid), {}, outcome,
                                       (path, 0, result.message) if key == "skipped" else result.message, "call")
            if key in ("xfailed", "xpassed"):
                report.wasxfail = result.message
            terminalreporter.stats.setdefault(key, []).append(report)

