"""pytest plugin: the one place the implementation under test is chosen, and all pytest policy.

- `--impl` (comma-separated or repeated): built-in names or `module:factory`; every contract
  runs for every implementation x family.
- Contract failures, model exceptions, bad outputs and timeouts print as one line with the
  command that reproduces them; a broken implementation costs its own rows and nothing else.
- The terminal ends with the conformance matrix; `--conformance-report=PATH` writes it too.
- `--xfails-file` marks known failures (ids matching nothing are warned about).
- A model that hangs fails one contract; one that crashes its process (under pytest -n) fails
  one; the later contracts of that model are reported at once as not run.
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
import tempfile
import threading
import time
import zlib

import numpy as np
import pytest
from _pytest.outcomes import OutcomeException

from . import bridges, canonical, findings, golden, harness, loading, tolerances
from .assertions import Check
from .faults import Faults, crash_summary
from .report import FAILING, ImplInfo, Report, Result
from .sources import NotApplicable
from .spec import FAMILIES, ModelSpec, device_name

STASH = pytest.StashKey["ConformanceSession"]()
TIMER = pytest.StashKey[contextlib.ExitStack]()
RESULT, IMPL_INFO, LOGITS = "conformance_result", "conformance_impl", "conformance_logits"  # user_properties names
FAULTS_DIR = "conformance_faults"  # workerinput key
DEFAULT_REFERENCE = "numpy"  # the executable specification (impls/numpy, docs/weights.md)
DEFAULT_DEVICE = "cpu"


class NotRun(pytest.skip.Exception):
    """A contract whose model already crashed or hung: reported at once instead of run."""


class Hung(OutcomeException):
    """A contract ran past --conformance-timeout. Neither an Exception nor pytest's Failed, so no
    `except Exception` (a model's) and no Hypothesis retry of the example can swallow it and wait on;
    an OutcomeException, so pytest's fixtures and reports treat it as a test outcome."""


class ConformanceSession:
    """The run's state, and the hooks that need it (registered as a plugin for the run)."""

    def __init__(self, config):
        opt = config.getoption
        self.worker = getattr(config, "workerinput", None)  # set in a pytest-xdist worker
        # pytest -n's controller only merges the workers' results: importing the factories is the workers'
        # job (9 s of CPU for the three frameworks), and a module that crashes on import then spares it.
        self.controller = self.worker is None and getattr(config.option, "dist", "no") != "no"
        names = dict.fromkeys(split_list(opt("impl")))  # each name once
        self.impls = [loading.Impl(n, loading.BUILTIN.get(n, n)) if self.controller else loading.resolve(n) for n in names]
        # What the cross-framework contracts compare every implementation with (docs/weights.md).
        reference = opt("reference")
        self.reference = next((i for i in self.impls if i.name == reference), None) or (
            loading.Impl(reference, loading.BUILTIN.get(reference, reference)) if self.controller else loading.resolve(reference))
        self.weights_dir = None  # canonical weights files, drawn from the seed when a contract first needs them
        self.families = split_list(opt("family")) or list(FAMILIES)
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise pytest.UsageError(f"unknown --family {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
        self.seed = opt("conformance_seed")
        self.timeout = opt("conformance_timeout")
        self.report_path = opt("conformance_report")
        self.threads = opt("conformance_threads") or (None if "OMP_NUM_THREADS" in os.environ else 1)
        bridges.limit_threads(self.threads)
        self.device = device_name(opt("device"))
        self.models = loading.ModelCache(self.seed, self.timeout, self.device)
        self.report = Report(self.seed)
        for impl in self.impls:
            self.report.impls[impl.name] = ImplInfo(impl.name, impl.target, error=impl.error)
        self.xfail_ids = read_id_file(opt("xfails_file"))
        shared = (self.worker or {}).get(FAULTS_DIR)
        shared = shared if shared and os.path.isdir(shared) else None  # a remote worker (--tx ssh=) keeps its own
        self.contracts_collected = False  # this process collected contracts (an xdist controller collects none)
        self.unusable_reported: set[tuple] = set()  # (impl, family, dtype) whose reason was printed in full
        self.faults = Faults(shared or tempfile.mkdtemp(prefix="conformance-faults-"))
        self.owns_faults_dir = not shared
        self.crash_log = None

    def impl(self, name: str) -> loading.Impl:
        return next(i for i in self.impls if i.name == name)

    def model(self, impl_name: str, family: str, dtype: str | None = None) -> harness.CheckedModel:
        """The checked model, or skip (declined) / fail (broken) / not run (crashed or hung before) the contract."""
        fault = self.faults.find(impl_name, f"{impl_name}/{family}")
        if fault:
            raise NotRun(fault)
        impl = self.impl(impl_name)
        built = self.models.precise(impl, family) if dtype is None else self.models.get(impl, family, dtype)
        if dtype is None and isinstance(built, loading.Declined):  # unless every family is declined (an error)
            self.models.refuse_if_all_declined(impl, self.families)
            built = self.models.precise(impl, family)
        if isinstance(built, loading.Declined):
            pytest.skip(built.reason)
        if isinstance(built, loading.Broken) and built.hung:
            raise Hung(f"hung before any contract ran: {built.reason}")
        if isinstance(built, loading.Broken):
            if (impl_name, family, dtype) in self.unusable_reported:  # one full line per model, not one per contract
                raise harness.UnusableAsBefore(f"{impl_name} cannot be used for {family}: see its first error")
            self.unusable_reported.add((impl_name, family, dtype))
            if dtype is None:
                self.report.impls[impl_name].unusable[family] = built.reason
            pytest.fail(built.reason, pytrace=False)
        if dtype is None:
            self.note_model(built)
        return built

    def canonical(self, impl: loading.Impl, family: str, dtype: str, weights: str | None = None, device: str | None = None,
                  **sizes) -> harness.CheckedModel:
        """`impl` built from canonical weights (the run's for `family` unless given, of a spec with
        other `sizes` if given), on the run's device unless given, or skip (it does not load them)."""
        built = self.models.get(impl, family, dtype, weights or self.canonical_weights(family), device, **sizes)
        if isinstance(built, loading.Declined):
            pytest.skip(built.reason)
        if isinstance(built, loading.Broken):
            pytest.fail(f"{impl.name}, built from canonical weights: {built.reason}", pytrace=False)
        if not (built.canonical_weights or built.weights_id):
            pytest.skip(f"{impl.name} does not declare that it loads canonical weights "
                        "(spec.weights; docs/weights.md says how)")
        return built

    def canonical_weights(self, family: str) -> str:
        """The canonical weights file of `family` for this seed: the same in every xdist worker."""
        if self.weights_dir is None:
            self.weights_dir = tempfile.mkdtemp(prefix="conformance-weights-")
        path = pathlib.Path(self.weights_dir, f"{family}-seed{self.seed}.safetensors")
        if not path.exists():
            spec = ModelSpec(family)
            canonical.save(path, canonical.random_weights(spec, seed=self.seed))
        return str(path)

    def describe(self, impl: loading.Impl) -> None:
        """Build the first family's model now, so the header can name backend, version and device."""
        if impl.error:
            return
        built = self.models.precise(impl, self.families[0])
        if isinstance(built, harness.CheckedModel):
            self.note_model(built)

    def note_model(self, model: harness.CheckedModel) -> None:
        info = self.report.impls[model.impl_name]
        adapter = model.adapter
        # Plain str: these travel from xdist workers, which cannot send torch's TorchVersion.
        info.backend = str(getattr(adapter, "backend", "?"))
        info.framework_version = str(getattr(adapter, "framework_version", "?"))
        info.device = str(getattr(adapter, "device", "?"))
        info.dtypes[model.family] = model.dtype + (f" ({model.note})" if model.note else "")

    # Results arrive here in this process (serial) or from the workers (xdist), one report at a time.
    def pytest_runtest_logreport(self, report):
        if self.worker is not None:
            return
        added = False
        for name, value in report.user_properties:
            if name == RESULT:
                self.report.add(Result(**value))
                added = True
            elif name == IMPL_INFO:
                self.merge_impl_info(value)
            elif name == LOGITS:
                self.report.add_logits(**value)
        if added and self.report_path and time.time() - self.report.written > 1:  # a killed run still leaves a report
            self.report.write(self.report_path)

    def merge_impl_info(self, value: dict) -> None:
        info = self.report.impls[value["name"]]
        for field in ("backend", "framework_version", "device", "error"):
            if value[field] not in ("?", ""):
                setattr(info, field, value[field])
        info.dtypes.update(value["dtypes"])
        info.unusable.update(value["unusable"])

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_xdist_make_scheduler(self, config, log):
        """-n N: each model's contracts in one worker (conformance/scheduling.py); another --dist than
        xdist's default `load` is kept."""
        if config.getvalue("dist") != "load":
            return None
        from .scheduling import ByModel

        return ByModel(config, log, self.model_of)

    def model_of(self, nodeid: str) -> str | None:
        result = self.result_from_nodeid(nodeid)
        return f"{result.impl}-{result.family}" if result else None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        node.workerinput[FAULTS_DIR] = str(self.faults.dir)

    def pytest_sessionstart(self, session):
        if self.worker is not None:
            # The signal and stack of a crash, for the controller to name (see pytest_handlecrashitem).
            self.crash_log = self.faults.crash_log(self.worker["workerid"]).open("w")
            faulthandler.enable(self.crash_log)
        else:
            if self.report_path and not session.config.option.collectonly:
                self.report.write(self.report_path)  # "running": what a run that dies before any verdict leaves
                self.report.written = 0.0  # the first result is written at once, however soon it comes
            if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                # An outer timeout's SIGTERM ends the run like Ctrl-C: the session finishes and writes the report.
                signal.signal(signal.SIGTERM, interrupt)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem, report, sched):
        """A worker died running `crashitem`: name the signal and the model's frame, and have the
        implementation's other contracts reported as not run rather than crash worker after worker."""
        result = self.result_from_nodeid(crashitem)
        if result is None:
            return
        worker = report.node.gateway.id
        log = self.faults.crash_log(worker)
        what = crash_summary(log.read_text(errors="replace") if log.exists() else "")
        self.faults.record(result.impl, f"not run: {result.impl} crashed worker {worker} in {result.contract} ({what})")
        result.outcome = "crashed"
        result.message = f"[{result.contract}] crashed its worker process {worker}: {what}"
        report.longrepr = f"{result.message}\n  reproduce: {reproduce_line(crashitem, result.impl, self.seed, self.reference.name, self.device)}"
        report.user_properties.append((RESULT, dataclasses.asdict(result)))
        self.report.crashes.append(f"{crashitem}: {what}")

    def result_from_nodeid(self, nodeid: str) -> Result | None:
        """A contract's result from its node id alone: the controller has no items to ask."""
        path, _, name = nodeid.partition("::")
        function, _, params = name.partition("[")
        impl = max((i.name for i in self.impls if params.startswith(f"{i.name}-")), key=len, default=None)
        if impl is None:
            return None
        family, _, case = params[len(impl) + 1 :].rstrip("]").partition("-")
        area = pathlib.Path(path).stem.removeprefix("test_")
        return Result(nodeid, impl, family, area, function.removeprefix("test_"), case, "", "", 0.0)

    def pytest_unconfigure(self, config):
        if self.crash_log is not None:
            faulthandler.disable()
            self.crash_log.close()
        if signal.getsignal(signal.SIGTERM) is interrupt:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if self.owns_faults_dir:
            shutil.rmtree(self.faults.dir, ignore_errors=True)
        if self.weights_dir:
            shutil.rmtree(self.weights_dir, ignore_errors=True)


def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def split_list(values) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def read_id_file(path) -> list[str]:
    if not path:
        return []
    lines = pathlib.Path(path).read_text().splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


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
    group.addoption("--xfails-file", default=None, metavar="PATH",
                    help="file of test ids (or id prefixes) that are known failures, one per line, # comments")


def pytest_configure(config):
    check_options(config)
    if config.getoption("impl") or config.getoption("xfails_file"):
        config.stash[STASH] = ConformanceSession(config)
        config.pluginmanager.register(config.stash[STASH], "conformance-session")


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
    report = opt("conformance_report")
    if report:
        blocker = next((p for p in pathlib.Path(report).absolute().parents if p.exists() and not p.is_dir()), None)
        if blocker:
            raise pytest.UsageError(f"--conformance-report={report}: cannot write under {blocker}, which is a file")


CHOOSE_IMPL = "pass --impl=torch (or tensorflow, mxnet, numpy, module:factory)"


def session_of(config) -> ConformanceSession | None:
    return config.stash.get(STASH, None)


def pytest_report_header(config):
    session = session_of(config)
    if session is None or session.worker is not None:
        return None
    if not session.controller:  # under xdist only workers run models: one that crashes must not take this process
        for impl in session.impls:
            session.describe(impl)
    threads = f"{session.threads} thread(s) per framework" if session.threads else "threads as OMP_NUM_THREADS says"
    lines = [f"conformance: seed {session.seed}, per-contract timeout {session.timeout:g}s, {threads}, "
             f"families {', '.join(session.families)}"]
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
    for item in contracts:
        # A hanging model fails its contract and the run goes on (the timer: pytest_timeout_set_timer).
        item.add_marker(pytest.mark.timeout(state.timeout, method="signal"))
        if any(matches(id_, item.nodeid) for id_ in state.xfail_ids):
            item.add_marker(pytest.mark.xfail(reason="listed in --xfails-file", strict=False))
    for id_ in state.xfail_ids:
        if not any(matches(id_, nodeid) for nodeid in collected):
            config.issue_config_time_warning(pytest.PytestWarning(f"--xfails-file id matches no test: {id_}"), 2)


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
        state.models.refuse_if_all_declined(state.impl(impl_name), families)
        for family in families:
            built = state.models.precise(state.impl(impl_name), family)
            if isinstance(built, harness.CheckedModel):
                state.note_model(built)
            elif isinstance(built, loading.Broken):
                state.report.impls[impl_name].unusable[family] = built.reason


def matches(id_: str, nodeid: str) -> bool:
    """An id names a test by its full node id or one without the directories, or any prefix of those."""
    return nodeid.startswith(id_) or nodeid.rsplit("/", 1)[-1].startswith(id_)


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
    weights = str(golden.weights_path(model.family))
    own = session.canonical(session.impl(model.impl_name), model.family, model.dtype, weights, **golden.SIZES)
    if not own.canonical_weights:
        pytest.skip(f"{own.impl_name} holds {weights_held(own)}, not the golden canonical weights")
    return own, golden.load(model.family)


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
        line = verdict_line(item, excinfo, session)
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


def result_of(item, report, excinfo, session, cause: str = "") -> Result:
    impl_name, family = item.callspec.params["model"]
    case = item.callspec.params.get("case")
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
    return Result(
        nodeid=item.nodeid,
        impl=impl_name,
        family=family,
        area=item.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"),
        contract=contract_of(item),
        case=str(case) if case is not None else "",
        outcome=outcome,
        message=message,
        duration=round(report.duration, 4),
        reproduce=reproduce(item, session) if outcome in FAILING else "",
        cause=cause if outcome in FAILING else "",
    )


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = session_of(config)
    if session is None or not session.impls or config.option.collectonly:
        return
    if not session.report.results and not session.contracts_collected:
        return  # a run of other tests that shares --impl (pytest benchmarks/): no conformance to report
    session.report.status = "interrupted" if exitstatus == pytest.ExitCode.INTERRUPTED else "finished"
    tw = config.get_terminal_writer()
    terminalreporter.section("conformance report")
    terminalreporter.write(session.report.render_terminal(width=max(tw.fullwidth, 100), color=tw.hasmarkup))
    if session.report_path:
        for path in session.report.write(session.report_path):
            terminalreporter.write_line(f"conformance report written to {path}")
