"""pytest-benchmark policy for benchmarks/: smoke runs by default, machine facts in every JSON."""
from __future__ import annotations

import pytest

from . import workload as W

SMOKE_STEPS = 8


def pytest_configure(config):
    # Without --benchmark-only / --benchmark-enable this is a smoke test: every case runs once.
    if not (config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False)):
        config.option.benchmark_disable = True


@pytest.fixture
def steps(benchmark):
    return SMOKE_STEPS if benchmark.disabled else W.PEER_STEPS


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info.update(cpu_model=W.cpu_model(), threads=W.THREADS, workload=W.describe(), versions=W.versions())


def pytest_report_header(config):
    return [f"decode workload: {W.describe()}", f"cpu: {W.cpu_model()}"]
