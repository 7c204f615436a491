"""pytest-benchmark policy for benchmarks/: smoke runs by default, machine facts in every JSON."""
from __future__ import annotations

import pytest

from conformance.plugin import split_list

from . import workload as W
from .implementations import LOOP_NAMES, loops

SMOKE_STEPS = 8


def pytest_addoption(parser):
    parser.getgroup("conformance benchmarks").addoption(
        "--loop", action="append", default=[], metavar="LOOP",
        help=f"loops to time with --impl, comma-separated: {', '.join(LOOP_NAMES)} (default: interface-eager, native)")


def pytest_configure(config):
    # Without --benchmark-only / --benchmark-enable this is a smoke test: every case runs once.
    if not (config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False)):
        config.option.benchmark_disable = True


@pytest.fixture
def steps(benchmark):
    return SMOKE_STEPS if benchmark.disabled else W.PEER_STEPS


def impl_names(config) -> list[str]:
    """--impl, the conformance plugin's option: the same names, the same resolver."""
    return split_list(config.getoption("impl", default=[]))


def pytest_generate_tests(metafunc):
    """test_impl_decode: every --impl name x family (--family, else all) x batch x loop."""
    if "impl_name" not in metafunc.fixturenames:
        return
    config = metafunc.config
    families = split_list(config.getoption("family", default=[])) or list(W.FAMILIES)
    unnamed = pytest.param(None, marks=pytest.mark.skip(reason="no --impl given (references run by backend: test_decode)"))
    metafunc.parametrize("impl_name", impl_names(config) or [unnamed])
    metafunc.parametrize("family", families)
    metafunc.parametrize("batch", W.BATCHES, ids=lambda b: f"B{b}")
    try:
        chosen = loops(split_list(config.getoption("loop", default=[])))
    except ValueError as exc:
        raise pytest.UsageError(f"--loop: {exc}") from None
    metafunc.parametrize("loop", chosen)


def pytest_collection_modifyitems(config, items):
    """With --impl, the run is about those implementations: the backend-keyed cases step aside."""
    if not impl_names(config):
        return
    kept = [item for item in items if "impl_name" in item.fixturenames]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info.update(cpu_model=W.cpu_model(), threads=W.THREADS, workload=W.describe(), versions=W.versions())


def pytest_report_header(config):
    return [f"decode workload: {W.describe()}", f"cpu: {W.cpu_model()}"]
