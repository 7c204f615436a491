"""pytest plugin: the one place the implementation under test is chosen, and all pytest policy.

- `--impl` (comma-separated or repeated): built-in names or `module:factory`; every contract
  runs for every implementation x family.
- Contract failures, model exceptions, bad outputs and timeouts print as one line with the
  command that reproduces them; a broken implementation costs its own rows and nothing else.
- The terminal ends with the conformance matrix; `--conformance-report=PATH` writes it too.
- `--xfails-file` marks known failures (ids matching nothing are warned about).
"""
from __future__ import annotations

import pathlib
import shlex
import zlib

import numpy as np
import pytest

from . import harness, loading
from .assertions import Check
from .report import ImplInfo, Report, Result
from .spec import FAMILIES

STASH = pytest.StashKey["ConformanceSession"]()


class ConformanceSession:
    def __init__(self, config):
        opt = config.getoption
        self.impls = [loading.resolve(name) for name in split_list(opt("impl"))]
        self.families = split_list(opt("family")) or list(FAMILIES)
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise pytest.UsageError(f"unknown --family {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
        self.seed = opt("conformance_seed")
        self.timeout = opt("conformance_timeout")
        self.report_path = opt("conformance_report")
        self.models = loading.ModelCache(self.seed, self.timeout)
        self.report = Report(self.seed)
        for impl in self.impls:
            self.report.impls[impl.name] = ImplInfo(impl.name, impl.target, error=impl.error)
        self.xfail_ids = read_id_file(opt("xfails_file"))
        self.xfail_matched: set[str] = set()

    def impl(self, name: str) -> loading.Impl:
        return next(i for i in self.impls if i.name == name)

    def model(self, impl_name: str, family: str, dtype: str | None = None) -> harness.CheckedModel:
        """The checked model, or skip (declined) / fail (broken) the contract with one line."""
        impl = self.impl(impl_name)
        built = self.models.precise(impl, family) if dtype is None else self.models.get(impl, family, dtype)
        if isinstance(built, loading.Declined):
            pytest.skip(built.reason)
        if isinstance(built, loading.Broken):
            pytest.fail(built.reason, pytrace=False)
        if dtype is None:
            self.note_model(built)
        return built

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
        info.backend = getattr(adapter, "backend", "?")
        info.framework_version = getattr(adapter, "framework_version", "?")
        info.device = getattr(adapter, "device", "?")
        info.dtypes[model.family] = model.dtype + (f" ({model.note})" if model.note else "")


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
                    help="implementation(s) under test: torch, tensorflow, mxnet or module:factory; comma-separated or repeated")
    group.addoption("--family", action="append", default=[], metavar="FAMILY",
                    help=f"restrict to these families (default all: {', '.join(FAMILIES)})")
    group.addoption("--conformance-seed", type=int, default=0, metavar="N",
                    help="seed for weights and inputs (default 0)")
    group.addoption("--conformance-timeout", type=float, default=120.0, metavar="SECONDS",
                    help="per-contract time limit, model building included (default 120)")
    group.addoption("--conformance-report", default=None, metavar="PATH",
                    help="also write the report as PATH.json and PATH.md")
    group.addoption("--xfails-file", default=None, metavar="PATH",
                    help="file of test ids (or id prefixes) that are known failures, one per line, # comments")


def pytest_configure(config):
    if config.getoption("impl") or config.getoption("xfails_file"):
        config.stash[STASH] = ConformanceSession(config)


def session_of(config) -> ConformanceSession | None:
    return config.stash.get(STASH, None)


def pytest_report_header(config):
    session = session_of(config)
    if session is None:
        return None
    for impl in session.impls:
        session.describe(impl)
    lines = [f"conformance: seed {session.seed}, per-contract timeout {session.timeout:g}s, families {', '.join(session.families)}"]
    return lines + ["  " + line for line in session.report.header_lines()[1:]]


def pytest_generate_tests(metafunc):
    if "model" not in metafunc.fixturenames:
        return
    session = session_of(metafunc.config)
    combos = [(i.name, f) for i in session.impls for f in session.families] if session else []
    metafunc.parametrize("model", combos, indirect=True, ids=[f"{i}-{f}" for i, f in combos])


@pytest.hookimpl(trylast=True)  # after -k / -m selection, so the items added here stay
def pytest_collection_modifyitems(session, config, items):
    contracts = [item for item in items if is_contract(item)]
    state = session_of(config)
    if contracts and (state is None or not state.impls):
        pytest.exit("no implementation chosen: pass --impl=torch (or tensorflow, mxnet, module:factory)", returncode=4)
    if state is None:
        return
    unloadable = {impl.name: impl for impl in state.impls if impl.error}
    if unloadable:
        # One line per implementation that cannot load, instead of one per contract it would have run.
        dropped = [item for item in contracts if item.callspec.params["model"][0] in unloadable]
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped] + [
            ImplementationUnavailable.from_parent(session, name=f"--impl={impl.name}", message=impl.error)
            for impl in unloadable.values()
        ]
        contracts = [item for item in contracts if item not in dropped]
    for item in contracts:
        # signal method: a hanging model fails its contract and the run goes on.
        item.add_marker(pytest.mark.timeout(state.timeout, method="signal"))
        if any(matches(id_, item.nodeid) for id_ in state.xfail_ids):
            state.xfail_matched.update(id_ for id_ in state.xfail_ids if matches(id_, item.nodeid))
            item.add_marker(pytest.mark.xfail(reason="listed in --xfails-file", strict=False))
    for id_ in state.xfail_ids:
        if id_ not in state.xfail_matched:
            config.issue_config_time_warning(pytest.PytestWarning(f"--xfails-file id matches no test: {id_}"), 2)


class ImplementationUnavailable(pytest.Item):
    """Stands for every contract of an --impl that cannot be loaded, and fails with the reason."""

    def __init__(self, *, message: str, **kwargs):
        super().__init__(**kwargs)
        self.message = message

    def runtest(self):
        raise harness.ConformanceError(f"{self.name}: {self.message}")

    def repr_failure(self, excinfo):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, None, self.name


def pytest_collection_finish(session):
    """Build every model the collected contracts need, once, before any runs: a factory that hangs
    or raises is then stopped by its own deadline and costs one wait, not one per contract."""
    state = session_of(session.config)
    if state is None or session.config.option.collectonly:
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


def matches(id_: str, nodeid: str) -> bool:
    """An id names a test by its full node id or one without the directories, or any prefix of those."""
    return nodeid.startswith(id_) or nodeid.rsplit("/", 1)[-1].startswith(id_)


def is_contract(item) -> bool:
    return "model" in getattr(item, "fixturenames", ())


@pytest.fixture
def model(request):
    impl_name, family = request.param
    return session_of(request.config).model(impl_name, family)


@pytest.fixture
def model_in(request, model):
    """The same implementation and family built in another dtype: `model_in("float32")`."""
    impl_name, family = request.node.callspec.params["model"]
    return lambda dtype: session_of(request.config).model(impl_name, family, dtype)


@pytest.fixture
def check(request, model):
    return Check(request.node.originalname.removeprefix("test_"), model.precision)


@pytest.fixture
def rng(request):
    seed = session_of(request.config).seed
    return np.random.default_rng([seed, zlib.crc32(request.node.nodeid.encode())])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    session = session_of(item.config)
    if session is None or not is_contract(item):
        return report
    if report.failed and call.excinfo is not None:
        line = verdict_line(item, call.excinfo, session)
        if line:
            report.longrepr = f"{line}\n  reproduce: {reproduce(item, session)}"
    if call.when == "call" or report.outcome != "passed":
        session.report.add(result_of(item, report, session))
    return report


def verdict_line(item, excinfo, session) -> str:
    contract = item.originalname.removeprefix("test_")
    if isinstance(excinfo.value, harness.ContractFailure):
        return str(excinfo.value)
    if isinstance(excinfo.value, harness.ConformanceError):
        return f"[{contract}] {excinfo.value}"
    if excinfo.typename == "Failed" and str(excinfo.value).startswith("Timeout"):
        return f"[{contract}] did not finish within {session.timeout:g}s (--conformance-timeout): the model hangs or is too slow"
    if excinfo.typename == "Failed":  # pytest.fail(..., pytrace=False) from a fixture: already one line
        return f"[{contract}] {excinfo.value}"
    return ""  # anything else is a bug in the suite itself: keep the traceback


def reproduce(item, session) -> str:
    impl_name = item.callspec.params["model"][0]
    return shlex.join(["pytest", item.nodeid, f"--impl={impl_name}", f"--conformance-seed={session.seed}"])


def result_of(item, report, session) -> Result:
    impl_name, family = item.callspec.params["model"]
    case = item.callspec.params.get("case")
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif report.failed:
        outcome = "failed" if report.when == "call" else "error"  # error: the model could not be built
    else:
        outcome = report.outcome
    message = ""
    if report.longrepr is not None:
        message = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr).splitlines()[0]
    return Result(
        nodeid=item.nodeid,
        impl=impl_name,
        family=family,
        area=item.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"),
        contract=item.originalname.removeprefix("test_"),
        case=str(case) if case is not None else "",
        outcome=outcome,
        message=message,
        duration=round(report.duration, 4),
        reproduce=reproduce(item, session) if outcome in ("failed", "error") else "",
    )


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = session_of(config)
    if session is None or not session.impls:
        return
    tw = config.get_terminal_writer()
    terminalreporter.section("conformance report")
    terminalreporter.write(session.report.render_terminal(width=max(tw.fullwidth, 100), color=tw.hasmarkup))
    if session.report_path:
        for path in session.report.write(session.report_path):
            terminalreporter.write_line(f"conformance report written to {path}")
