"""pytest plugin: the one place the implementation under test is chosen, and all pytest policy.

- `--impl` (comma-separated or repeated): built-in names or `module:factory`; every contract
  runs for every implementation x family.
- Contract failures, model exceptions, bad outputs and timeouts print as one line with the
  command that reproduces them; a broken implementation costs its own rows and nothing else.
- The terminal ends with the conformance matrix; `--conformance-report=PATH` writes it too.
- `--xfails-file` marks known failures (ids matching nothing are warned about).
- A model that hangs fails one contract; one that ends the process running it (a serial run's
  child, watched by conformance/supervisor.py, or an xdist worker) fails one; the later contracts
  of that model are reported at once as not run.
- Results travel on each test report (`user_properties`), so pytest-xdist's controller merges
  every worker's into one report, written as results arrive.
"""
from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import os
import pathlib
import shlex
import shutil
import signal
import sys
import threading
import time
import zlib

import numpy as np
import pytest

from . import findings, golden, harness, loading, supervisor, tolerances
from .bridges import seed_frameworks
from .assertions import Check
from .faults import WATCHDOG, Hung, NotRun, crash_summary, exit_status, hang_summary
from .report import FAILING, ReportInUse, ReportLock, Result, check_writable, report_stem
from .session import (  # noqa: F401 (split_list: the benchmarks split --impl with it)
    FAULTS_DIR, IMPL_INFO, LOGITS, RESULT, ConformanceSession, absorb, read_id_file, split_list)
from .sources import NotApplicable
from .spec import FAMILIES, device_name
from .text import clean

STASH = pytest.StashKey[ConformanceSession]()
TIMER = pytest.StashKey[contextlib.ExitStack]()
OWN_STDERR = pytest.StashKey[object]()  # the terminal's stderr, for the watchdog of a run nothing watches
DEFAULT_REFERENCE = "numpy"  # the executable specification (impls/numpy, docs/weights.md)
DEFAULT_DEVICE = "cpu"


class RunHooks:
    """The hooks that need the run's state, registered as a plugin for the run."""

    def __init__(self, session: ConformanceSession, config):
        self.session = session
        self.config = config

    # Results arrive here in this process (serial) or from the workers (xdist), one report at a time.
    def pytest_runtest_logreport(self, report):
        session = self.session
        if session.worker is not None:
            return
        if session.journal and report.user_properties:
            session.journal.write(properties=report.user_properties)
        added = absorb(session.report, report.user_properties)
        if added and session.report_path and time.time() - session.report.written > 1:  # a killed run still leaves a report
            self.write_report()

    # A supervised child's journal says which contract ran when the child ended (conformance/supervisor.py).
    def pytest_runtest_logstart(self, nodeid, location):
        if self.session.journal:
            self.session.journal.write(start=nodeid)

    def pytest_runtest_logfinish(self, nodeid, location):
        if self.session.journal:
            self.session.journal.write(end=nodeid)

    def write_report(self) -> list[pathlib.Path]:
        return write_report(self.session, self.config)

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_xdist_make_scheduler(self, config, log):
        """-n N: each model's contracts in one worker (conformance/scheduling.py); another --dist than
        xdist's default `load` is kept."""
        if config.getvalue("dist") != "load":
            return None
        from .scheduling import ByModel

        return ByModel(config, log, self.session.faults.selected)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        node.workerinput[FAULTS_DIR] = str(self.session.faults.dir)

    def pytest_sessionstart(self, session):
        state = self.session
        state.pytest_session = session
        if state.worker is not None or state.supervision is not None:
            # The signal and stack of a crash, and the watchdog's dump of a hang in native code, for
            # the process watching this one to name (pytest_handlecrashitem, the supervisor).
            if state.worker:
                state.crash_log = state.faults.crash_log(state.worker["workerid"]).open("w")
            else:  # opened before the implementations were imported; pytest's faulthandler plugin took it over since
                state.crash_log = state.supervision.crash_file
            faulthandler.enable(state.crash_log)
            WATCHDOG.file = state.crash_log
        elif session.config.stash.get(OWN_STDERR, None) is not None:  # a command-line run that nothing watches
            WATCHDOG.file = session.config.stash[OWN_STDERR]
        if state.worker is None:
            if state.report_path and not session.config.option.collectonly:
                self.write_report()  # "running": what a run that dies before any verdict leaves
                state.report.written = 0.0  # the first result is written at once, however soon it comes
            if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                # An outer timeout's SIGTERM ends the run like Ctrl-C: the session finishes and writes the report.
                signal.signal(signal.SIGTERM, interrupt)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem, report, sched):
        """A worker died running `crashitem`: name the signal and the model's frame (or, where the
        watchdog ended a hang in native code, say so), and have the implementation's other contracts
        (of that family, for a hang) reported as not run rather than crash or hang worker after worker."""
        state = self.session
        result = state.faults.result_of_nodeid(crashitem)
        worker = report.node.gateway.id
        log = state.faults.crash_log(worker)
        log = log.read_text(errors="replace") if log.exists() else ""
        hang, what = hang_summary(log, state.timeout), crash_summary(log, exit_status(report.node))
        if hang:
            result.outcome, result.message = "hung", f"[{result.contract}] {hang}"
            if result.impl:
                state.faults.record(f"{result.impl}/{result.family}",
                                    f"not run: {result.impl}-{result.family} hung in {result.contract} (in native code)")
        else:
            result.outcome, result.message = "crashed", f"[{result.contract}] crashed its worker process {worker}: {what}"
            if result.impl:
                state.faults.record(result.impl, f"not run: {result.impl} crashed worker {worker} in {result.contract} ({what})")
        report.longrepr = f"{result.message}\n  reproduce: {reproduce_line(crashitem, result.impl, state.seed, state.reference.name, state.device)}"
        report.user_properties.append((RESULT, dataclasses.asdict(result)))
        if not hang:
            state.report.crashes.append(f"{crashitem}: {what}")

    def pytest_unconfigure(self, config):
        state = self.session
        if state.journal and state.pytest_session is not None:
            state.journal.write(finished=int(state.pytest_session.exitstatus))
        if WATCHDOG.file is not None:
            WATCHDOG.disarm()
            WATCHDOG.file = None
        if state.crash_log is not None:
            faulthandler.disable()
            state.crash_log.close()
        if signal.getsignal(signal.SIGTERM) is interrupt:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if state.owns_faults_dir:
            shutil.rmtree(state.faults.dir, ignore_errors=True)
        if state.weights_dir:
            shutil.rmtree(state.weights_dir, ignore_errors=True)
        if state.report_lock is not None:
            state.report_lock.release()


def write_report(session: ConformanceSession, config) -> list[pathlib.Path]:
    """The report's files, or [] where they cannot be written: said once, and the run goes on
    (the terminal has every verdict; the last write, at the end, tries again)."""
    try:
        return session.report.write(session.report_path)
    except OSError as exc:
        session.report.written = time.time()  # not again at once: on the next result a second later
        problem = f"cannot write the conformance report {session.report_path}: {exc.strerror or exc}"
        if problem != session.report_problem:
            session.report_problem = problem
            terminal = config.pluginmanager.get_plugin("terminalreporter")
            if terminal is not None:
                if config.get_terminal_writer().width_of_current_line:  # after -q's progress dots
                    terminal.write("\n")
                terminal.write_line(f"WARNING: {problem}; the run goes on", yellow=True, bold=True)
        return []


def interrupt(signum, frame):
    """SIGTERM ends the run as Ctrl-C does, once: a second one (a supervisor passes on the one an
    outer timeout sent to both) must not cut short the writing of the report."""
    if not getattr(interrupt, "received", False):
        interrupt.received = True
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def pytest_addoption(parser):
    group = parser.getgroup("conformance", "seq2seq Encoder-Decoder conformance")
    group.addoption("--impl", action="append", default=[], metavar="NAME",
                    help="implementation(s) under test: torch, tensorflow, mxnet, onnxruntime, numpy or module:factory; comma-separated or repeated")
    group.addoption("--family", action="append", default=[], metavar="FAMILY",
                    help=f"restrict to these families (default all: {', '.join(FAMILIES)})")
    group.addoption("--conformance-seed", type=int, default=0, metavar="N",
                    help="seed for weights and inputs (default 0)")
    group.addoption("--conformance-timeout", type=float, default=120.0, metavar="SECONDS",
                    help="per-contract time limit, model building included (default 120)")
    group.addoption("--conformance-threads", type=int, default=None, metavar="N",
                    help="intra-op threads per framework (default 1, or the frameworks' own choice when OMP_NUM_THREADS is set)")
    group.addoption("--device", default=DEFAULT_DEVICE, metavar="DEVICE",
                    help="where each factory builds and runs its models: cpu, cuda or cuda:N (default cpu); "
                         "the cross-framework reference stays on the cpu")
    group.addoption("--reference", default=DEFAULT_REFERENCE, metavar="NAME",
                    help="what the cross-framework contracts compare each implementation with, both built from the "
                         "same canonical weights (default numpy: the executable specification)")
    group.addoption("--conformance-report", default=None, metavar="PATH",
                    help="also write the report as PATH.json and PATH.md")
    group.addoption("--no-conformance-supervisor", dest="conformance_supervisor", action="store_false", default=True,
                    help="run the models in pytest's own process, not in a child process it watches: a model that "
                         "ends the process (os._exit, a crash) then ends the run without verdicts (for debuggers and "
                         "profilers that follow one process)")
    group.addoption("--xfails-file", default=None, metavar="PATH",
                    help="file of test ids (or id prefixes) that are known failures, one per line, # comments")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """A serial run from the command line runs its session in a child process this one watches
    (conformance/supervisor.py); this process returns the run's exit code when the child is done."""
    if supervisor.wanted(config):
        return supervisor.supervise(config)
    if supervisor.owns_process(config):  # unsupervised on request: the watchdog's dump goes to the terminal
        config.stash[OWN_STDERR] = os.fdopen(os.dup(sys.stderr.fileno()), "w")
    return None


def pytest_configure(config):
    check_options(config)
    if config.getoption("impl") or config.getoption("xfails_file"):
        lock = lock_report(config)
        config.stash[STASH] = ConformanceSession(config, supervisor.supervised(config))
        config.stash[STASH].report_lock = lock
        config.pluginmanager.register(RunHooks(config.stash[STASH], config), "conformance-session")


def check_options(config) -> None:
    """A mistake on the command line stops the run at once with one line (exit 4), before any model is built."""
    opt = config.getoption
    if opt("impl") and not split_list(opt("impl")):
        raise pytest.UsageError(f"--impl is empty: {CHOOSE_IMPL}")
    if opt("conformance_seed") < 0:
        raise pytest.UsageError(f"--conformance-seed={opt('conformance_seed')}: a seed is 0 or more")
    if not opt("conformance_timeout") > 0:
        raise pytest.UsageError(f"--conformance-timeout={opt('conformance_timeout'):g}: the limit must be more than 0 seconds")
    try:
        device_name(opt("device"))
    except ValueError as exc:
        raise pytest.UsageError(f"--device={opt('device')}: {exc}") from None
    if opt("conformance_threads") is not None and opt("conformance_threads") < 1:
        raise pytest.UsageError(f"--conformance-threads={opt('conformance_threads')}: at least 1")
    xfails = opt("xfails_file")
    if xfails and not pathlib.Path(xfails).is_file():
        raise pytest.UsageError(f"--xfails-file={xfails}: no such file")
    try:
        read_id_file(xfails)
    except ValueError as exc:
        raise pytest.UsageError(f"--xfails-file={xfails}: {exc}") from None
    report = opt("conformance_report")
    if report:
        blocker = next((p for p in pathlib.Path(report).absolute().parents if p.exists() and not p.is_dir()), None)
        if blocker:
            raise pytest.UsageError(f"--conformance-report={report}: cannot write under {blocker}, which is a file")
        if not hasattr(config, "workerinput"):  # xdist's workers write no report
            try:
                check_writable(report)
            except OSError as exc:
                raise pytest.UsageError(f"--conformance-report={report}: cannot write in {report_stem(report).parent.absolute()}: "
                                        f"{exc.strerror or exc}") from None


def lock_report(config) -> ReportLock | None:
    """The report path's lock, held by the process that writes the report until the run ends."""
    report = config.getoption("conformance_report")
    if not report or hasattr(config, "workerinput") or config.option.collectonly:
        return None
    lock = ReportLock(report, owner=os.getppid() if supervisor.supervised(config) else None)
    try:
        lock.acquire()
    except ReportInUse as exc:
        raise pytest.UsageError(f"--conformance-report={report}: another run ({exc}) is writing this report; "
                                "let it finish, or choose another path") from None
    return lock


CHOOSE_IMPL = f"pass --impl=torch (or {', '.join(name for name in loading.BUILTIN if name != 'torch')}, module:factory)"


def session_of(config) -> ConformanceSession | None:
    return config.stash.get(STASH, None)


def pytest_report_header(config):
    session = session_of(config)
    if session is None or session.worker is not None:
        return None
    # Under xdist only workers run models: one that crashes must not take this process. A supervised
    # child builds them once it knows the contracts, so that a crash then is named by contract.
    if not session.controller and session.supervision is None:
        for impl in session.impls:
            session.describe(impl)
    threads = f"{session.threads} thread(s) per framework" if session.threads else "threads as OMP_NUM_THREADS says"
    lines = [f"conformance: seed {session.seed}, per-contract timeout {session.timeout:g}s, {threads}, "
             f"families {', '.join(session.families)}"]
    if config.stash.get(OWN_STDERR, None) is not None:  # a serial command-line run that nothing watches
        lines.append(f"  models run in pytest's own process ({supervisor.why_not(config)}): one that ends it ends the run")
    return lines + ["  " + line for line in session.report.header_lines()[1:]]


def pytest_generate_tests(metafunc):
    if "model" not in metafunc.fixturenames:
        return
    session = session_of(metafunc.config)
    combos = [(i.name, f) for i in session.impls for f in session.families] if session else []
    metafunc.parametrize("model", combos, indirect=True, ids=[f"{i}-{f}" for i, f in combos])


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(session, config, items):
    # Before -k / -m deselect: an --xfails-file id of a deselected test is no typo.
    collected = [item.nodeid for item in items if is_contract(item)]
    yield
    # After selection, so the items added here stay.
    contracts = [item for item in items if is_contract(item)]
    state = session_of(config)
    if contracts and (state is None or not state.impls):
        raise pytest.UsageError(f"no implementation chosen: {CHOOSE_IMPL}")
    if state is not None:
        state.contracts_collected = bool(contracts) or any(i.error for i in state.impls)
    if state is None:
        return
    unloadable = {impl.name: impl for impl in state.impls if impl.error}
    if unloadable:
        # One line per implementation that cannot load, instead of one per contract it would have run.
        dropped = [item for item in contracts if item.callspec.params["model"][0] in unloadable]
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped] + [
            ImplementationUnavailable.from_parent(session, name=f"--impl={impl.name}", impl_name=impl.name, message=impl.error)
            for impl in unloadable.values()
        ]
        contracts = [item for item in contracts if item not in dropped]
    # Every process that runs contracts records what each node id is about, for the one that must
    # name a contract from its node id alone (xdist's controller, when a worker crashes).
    state.faults.write_selected([identity(item) for item in contracts])
    state.report.selected = len(contracts)
    if state.done:  # a supervised run going on after a crash: the verdicts it has stand (and are counted at the end)
        items[:] = [item for item in items if item.nodeid not in state.done]
        contracts = [item for item in contracts if item.nodeid not in state.done]
    for item in contracts:
        # A hanging model fails its contract and the run goes on (the timer: pytest_timeout_set_timer).
        item.add_marker(pytest.mark.timeout(state.timeout, method="signal"))
        if any(matches(id_, item.nodeid) for id_ in state.xfail_ids):
            item.add_marker(pytest.mark.xfail(reason="listed in --xfails-file", strict=False))
    for id_ in state.xfail_ids:
        if not any(matches(id_, nodeid) for nodeid in collected):
            config.issue_config_time_warning(pytest.PytestWarning(f"--xfails-file id matches no test: {id_}"), 2)
            continue
        marked = [item for item in contracts if matches(id_, item.nodeid)]
        impls = dict.fromkeys(item.callspec.params["model"][0] for item in marked)
        names = dict.fromkeys(contract_of(item) for item in marked)
        if len(impls) > 1 or len(names) > 1:  # a known failure is one contract of one implementation
            config.issue_config_time_warning(pytest.PytestWarning(
                f"--xfails-file id {id_} marks {len(marked)} tests of {len(impls)} implementation(s) and {len(names)} "
                f"contract(s) as known failures ({', '.join(list(names)[:3])}{', ...' if len(names) > 3 else ''}): "
                "list each known failure by its contract and implementation"), 2)


class ImplementationUnavailable(pytest.Item):
    """Stands for every contract of an --impl that cannot be loaded, and fails with the reason."""

    def __init__(self, *, impl_name: str, message: str, **kwargs):
        super().__init__(**kwargs)
        self.impl_name = impl_name
        self.message = message

    def runtest(self):
        raise harness.ConformanceError(f"{self.name}: {self.message}")

    def repr_failure(self, excinfo):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, None, self.name


def pytest_collection_finish(session):
    """Build every model the collected contracts need, once, before any runs: a factory that hangs
    or raises is then stopped by its own deadline and costs one wait, not one per contract.
    Not in an xdist worker: there a model that crashes must crash inside the contract that named it."""
    state = session_of(session.config)
    if state is None or session.config.option.collectonly or state.worker is not None:
        return
    wanted: dict[str, list[str]] = {}
    for impl_name, family in dict.fromkeys(i.callspec.params["model"] for i in session.items if is_contract(i)):
        wanted.setdefault(impl_name, []).append(family)
    for impl_name, families in wanted.items():
        families = [f for f in families if not state.faults.find(impl_name, f"{impl_name}/{f}")]  # crashed or hung before
        for family in families:
            if state.journal:  # a crash or a hang in native code here is the model's: the supervisor says so
                state.journal.write(trying=[impl_name, family])
            state.models.precise(state.impl(impl_name), family)
            if state.journal:
                state.journal.write(tried=[impl_name, family])
        state.models.refuse_if_all_declined(state.impl(impl_name), families)
        for family in families:
            built = state.models.precise(state.impl(impl_name), family)
            if isinstance(built, harness.CheckedModel):
                state.note_model(built)
            elif isinstance(built, loading.Broken):
                state.report.impls[impl_name].unusable[family] = built.reason


ID_BOUNDARIES = ("::", "[", "-", "]", "/")


def matches(id_: str, nodeid: str) -> bool:
    """An id names a test by its full node id or one without the directories, or a prefix of those
    that ends where a part of the id ends (before `::`, `[`, `-`, `]`, or after a `/`): `t` names no
    test, `test_errors.py` every test in that file, `...[torch` every case of torch."""
    return any(
        name.startswith(id_) and (len(name) == len(id_) or name[len(id_):].startswith(ID_BOUNDARIES) or id_.endswith(ID_BOUNDARIES))
        for name in (nodeid, nodeid.rsplit("/", 1)[-1]))


def is_contract(item) -> bool:
    return "model" in getattr(item, "fixturenames", ())


@pytest.fixture
def model(request):
    impl_name, family = request.param
    built = session_of(request.config).model(impl_name, family)
    built.used.clear()  # the calls this contract makes (conformance/findings.py)
    return built


@pytest.fixture
def model_in(request, model):
    """The same implementation and family built in another dtype: `model_in("float32")`."""
    impl_name, family = request.node.callspec.params["model"]
    return lambda dtype: session_of(request.config).model(impl_name, family, dtype)


@pytest.fixture
def canonical_pair(request, model):
    """(this implementation, the reference), each built from the same canonical weights; the
    implementation in the dtype its contracts run in, the reference in float64."""
    session = session_of(request.config)
    if model.impl_name == session.reference.name:
        pytest.skip(f"{model.impl_name} is the reference (--reference={session.reference.name})")
    own = session.canonical(session.impl(model.impl_name), model.family, model.dtype)
    reference = session.canonical(session.reference, model.family, "float64", device="cpu")
    if (own.weights_id, own.canonical_weights) != (reference.weights_id, reference.canonical_weights):
        pytest.skip(f"{own.impl_name} holds {weights_held(own)}, the reference {reference.impl_name} {weights_held(reference)}")
    return own, reference


def weights_held(model: harness.CheckedModel) -> str:
    return "the canonical weights" if model.canonical_weights else f"the weights {model.weights_id!r} (Declared weights_id)"


@pytest.fixture
def golden_pair(request, model):
    """(this implementation built from the golden weights of its family, the golden vectors)."""
    session = session_of(request.config)
    try:  # the suite's own files: a damaged one is named, not blamed on the factory that reads it
        weights, vectors = str(golden.verify(golden.weights_path(model.family))), golden.load(model.family)
    except golden.DamagedFile as exc:
        pytest.fail(str(exc), pytrace=False)
    own = session.canonical(session.impl(model.impl_name), model.family, model.dtype, weights, **golden.SIZES)
    if not own.canonical_weights:
        pytest.skip(f"{own.impl_name} holds {weights_held(own)}, not the golden canonical weights")
    return own, vectors


@pytest.fixture
def record_logits(request, model):
    """record_logits(model, logits): kept for the report's difference matrix across implementations."""
    case = str(request.node.callspec.params.get("case", ""))

    def record(of: harness.CheckedModel, logits: np.ndarray) -> None:
        request.node.user_properties.append((LOGITS, {
            "family": of.family, "case": case, "impl": of.impl_name, "dtype": of.dtype, "logits": logits.tolist()}))

    return record


@pytest.fixture
def check(request, model):
    return Check(request.node.originalname.removeprefix("test_"), model.precision)


@pytest.fixture
def agree(request, model):
    """Check, at the tolerances for two implementations of the same weights."""
    return Check(request.node.originalname.removeprefix("test_"), model.precision, tolerances.AGREE)


@pytest.fixture
def rng(request):
    seed = session_of(request.config).seed
    # Seeded from the contract module's file name and the test's name with its parameters, not the
    # node id, which depends on how pytest was invoked (`pytest conformance/`, `--pyargs`, a rootdir).
    return np.random.default_rng([seed, zlib.crc32(f"{request.node.path.name}::{request.node.name}".encode())])


@pytest.fixture
def shared_rng(request, model):
    """Like `rng`, but the same for every implementation: the cross-framework contracts compare
    implementations on the same inputs."""
    seed = session_of(request.config).seed
    case = request.node.callspec.params.get("case", "")
    name = f"{request.node.path.name}::{request.node.originalname}[{model.family}-{case}]"
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item, settings):
    """pytest-timeout's timer for a contract, raising `Hung`: pytest.fail's `Failed` would be
    caught by Hypothesis, which then runs the hanging model again with no timer left. Off the main
    thread there is no SIGALRM: pytest-timeout's own thread method serves."""
    if session_of(item.config) is None or not is_contract(item) or threading.current_thread() is not threading.main_thread():
        return None
    timer = contextlib.ExitStack()
    timer.enter_context(loading.deadline(settings.timeout, Hung))
    item.stash[TIMER] = timer
    return True


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_cancel_timer(item):
    timer = item.stash.get(TIMER, None)
    if timer is None:
        return None
    del item.stash[TIMER]
    timer.close()
    return True


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A contract that needs a call the model declines (it raised conformance.Unsupported), or that does
    not apply to the model's source (conformance/sources.py), is skipped with the reason: it is
    neither passed nor failed."""
    if is_contract(pyfuncitem):
        # The frameworks' own generators (a model's dropout) drawn per contract, after every fixture has
        # built what it builds: a random model's numbers depend on the contract, not on what ran before
        # it in this process (serial, -n, a reproduce line).
        session = session_of(pyfuncitem.config)
        seed_frameworks(zlib.crc32(f"{session.seed}:{pyfuncitem.path.name}::{pyfuncitem.name}".encode()))
    try:
        return (yield)
    except (harness.ModelDeclined, NotApplicable) as exc:
        if not is_contract(pyfuncitem):
            raise
        pytest.skip(f"[{contract_of(pyfuncitem)}] {exc}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    session = session_of(item.config)
    if isinstance(item, ImplementationUnavailable) and call.when == "call":  # the reason, for xdist's controller
        report.user_properties.append((IMPL_INFO, dataclasses.asdict(session.report.impls[item.impl_name])))
    if session is None or not is_contract(item):
        return report
    impl_name, family = item.callspec.params["model"]
    excinfo = call.excinfo
    cause = ""
    if report.failed and excinfo is not None:
        line = clean(verdict_line(item, excinfo, session), limit=None)  # whatever of a model's text it holds
        if line:
            cause, line = findings.explain(contract_of(item), item.funcargs.get("model"), excinfo.value, item.callspec.params, line)
            again = excinfo.errisinstance(harness.UnusableAsBefore)
            report.longrepr = line if again else f"{line}\n  reproduce: {reproduce(item, session)}"
    if excinfo is not None and excinfo.errisinstance(Hung):
        session.faults.record(f"{impl_name}/{family}", f"not run: {impl_name}-{family} hung in {contract_of(item)} ({excinfo.value})")
    if call.when == "call" or report.outcome != "passed":
        # Carried on the report, so an xdist worker's results reach the controller (pytest_runtest_logreport).
        report.user_properties.append((RESULT, dataclasses.asdict(result_of(item, report, excinfo, session, cause))))
        report.user_properties.append((IMPL_INFO, dataclasses.asdict(session.report.impls[impl_name])))
    return report


def contract_of(item) -> str:
    return item.originalname.removeprefix("test_")


def verdict_line(item, excinfo, session) -> str:
    contract = contract_of(item)
    if isinstance(excinfo.value, harness.ContractFailure):
        return str(excinfo.value)
    if isinstance(excinfo.value, (harness.ConformanceError, Hung)):
        return f"[{contract}] {excinfo.value}"
    if excinfo.typename == "Failed":  # pytest.fail(..., pytrace=False) from a fixture: already one line
        return f"[{contract}] {excinfo.value}"
    return ""  # anything else is a bug in the suite itself: keep the traceback


def reproduce(item, session) -> str:
    return reproduce_line(item.nodeid, item.callspec.params["model"][0], session.seed, session.reference.name,
                          session.device)


# Environment variables that decide what the model is or what it computes, carried into reproduce lines
# where set. Not PYTHONPATH and the like: paths name one machine, and the line reruns from where it ran.
MODEL_ENVIRONMENT = {
    "TF_USE_LEGACY_KERAS": "tf.keras is Keras 2 (tf_keras) under 1, Keras 3 otherwise",
    "KERAS_BACKEND": "the framework Keras 3 runs on",
    "TF_ENABLE_ONEDNN_OPTS": "TensorFlow's oneDNN kernels, which round differently",
    "TF_DETERMINISTIC_OPS": "deterministic TensorFlow kernels",
    "TF_CUDNN_DETERMINISTIC": "deterministic cuDNN kernels under TensorFlow",
    "CUBLAS_WORKSPACE_CONFIG": "deterministic cuBLAS, which torch's deterministic algorithms need",
    "NVIDIA_TF32_OVERRIDE": "TF32 matrix products on NVIDIA GPUs",
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "TF32 matrix products in torch",
    "MXNET_ENGINE_TYPE": "MXNet's engine (NaiveEngine runs operators synchronously)",
    "MXNET_SUBGRAPH_BACKEND": "MXNet's graph rewrites (fused operators round differently)",
    "OMP_NUM_THREADS": "threads per framework where --conformance-threads is not given (the order of sums)",
}
GPU_ENVIRONMENT = {"CUDA_VISIBLE_DEVICES": "which GPU --device=cuda:N names"}


def model_environment(device: str = DEFAULT_DEVICE) -> dict[str, str]:
    """{name: value} of every variable of MODEL_ENVIRONMENT (and, on a GPU, GPU_ENVIRONMENT) that is set."""
    names = [*MODEL_ENVIRONMENT, *(GPU_ENVIRONMENT if device != "cpu" else ())]
    return {name: os.environ[name] for name in names if name in os.environ}


def reproduce_line(nodeid: str, impl_name: str, seed: int, reference: str = DEFAULT_REFERENCE,
                   device: str = DEFAULT_DEVICE) -> str:
    """The shell command that reruns one contract: the environment that decides what the model is, then
    `reproduce_args`."""
    assignments = [f"{name}={shlex.quote(value)}" for name, value in model_environment(device).items()]
    return " ".join([*assignments, shlex.join(reproduce_args(nodeid, impl_name, seed, reference, device))])


def reproduce_args(nodeid: str, impl_name: str, seed: int, reference: str = DEFAULT_REFERENCE,
                   device: str = DEFAULT_DEVICE) -> list[str]:
    """The pytest command that reruns one contract as printed, from the directory pytest was started in:
    the contract module's path relative to it where it lies below it, absolute elsewhere (`--pyargs`).
    Node ids depend on the rootdir; the contract modules are always this package's."""
    path, sep, test = nodeid.partition("::")
    module = pathlib.Path(__file__).resolve().parent / pathlib.Path(path).name
    here = pathlib.Path.cwd()
    shown = module.relative_to(here) if module.is_relative_to(here) else module
    args = ["pytest", f"{shown}{sep}{test}", f"--impl={impl_name}", f"--conformance-seed={seed}"]
    return (args + ([f"--reference={reference}"] if reference != DEFAULT_REFERENCE else [])
            + ([f"--device={device}"] if device != DEFAULT_DEVICE else []))


def identity(item) -> dict:
    """What a contract's result is about, from the item's parameters: never parsed from its node id,
    which pytest escapes (non-ASCII) and whose parts may hold '-', '[' or '::' themselves."""
    impl_name, family = item.callspec.params["model"]
    case = item.callspec.params.get("case")
    return {"nodeid": item.nodeid, "impl": impl_name, "family": family, "contract": contract_of(item),
            "area": item.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"), "case": str(case) if case is not None else ""}


def result_of(item, report, excinfo, session, cause: str = "") -> Result:
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif excinfo is not None and excinfo.errisinstance(Hung):
        outcome = "hung"
    elif excinfo is not None and excinfo.errisinstance(NotRun):
        outcome = "not run"
    elif report.failed:
        outcome = "failed" if report.when == "call" else "error"  # error: the model could not be built
    else:
        outcome = report.outcome
    message = ""
    if outcome == "not run":
        message = str(excinfo.value)
    elif report.longrepr is not None:
        message = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr).splitlines()[0]
    return Result(**identity(item), outcome=outcome, message=message, duration=round(report.duration, 4),
                  reproduce=reproduce(item, session) if outcome in FAILING else "", cause=cause if outcome in FAILING else "")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = session_of(config)
    if session is None or not session.impls or config.option.collectonly:
        return
    if not session.report.results and not session.contracts_collected:
        return  # a run of other tests that shares --impl (pytest benchmarks/): no conformance to report
    session.report.status = "interrupted" if exitstatus == pytest.ExitCode.INTERRUPTED else "finished"
    if session.controller:  # what the workers selected
        session.report.selected = len(session.faults.selected()) or None
    if session.report.missing() and session.pytest_session.exitstatus == pytest.ExitCode.OK:
        session.pytest_session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a run passes only when every contract has a verdict
    if session.done:
        supervisor.count_earlier_verdicts(terminalreporter, session)
    tw = config.get_terminal_writer()
    terminalreporter.section("conformance report")
    terminalreporter.write(session.report.render_terminal(width=max(tw.fullwidth, 100), color=tw.hasmarkup))
    if not session.report_path:
        return
    paths = write_report(session, config)
    for path in paths:
        terminalreporter.write_line(f"conformance report written to {path}")
    if not paths:
        terminalreporter.write_line(f"ERROR: {session.report_problem}: no report was written", red=True, bold=True)
        if session.pytest_session.exitstatus == pytest.ExitCode.OK:  # CI must not pass without the report it asked for
            session.pytest_session.exitstatus = pytest.ExitCode.TESTS_FAILED
