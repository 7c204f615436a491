"""Running the conformance plugin inside a test, as a user would, and reading its report."""
import dataclasses
import importlib.util
import json
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
FAILING = ("failed", "error", "hung", "crashed")  # outcomes that fail the run, with a message each


@dataclasses.dataclass
class Run:
    outcome: object  # pytester.RunResult
    report: dict
    output: str

    def contracts(self, *outcomes) -> set[str]:
        return {m["contract"] for m in self.report["matrix"] if m["outcome"] in outcomes}

    @property
    def failed(self) -> set[str]:
        return self.contracts(*FAILING)

    def messages(self) -> list[str]:
        return [r["message"] for r in self.report["results"] if r["outcome"] in FAILING]

    def verdicts(self, impl: str | None = None) -> dict[str, str]:
        """{node id: outcome} of every result (of one implementation)."""
        return {r["nodeid"]: r["outcome"] for r in self.report["results"] if impl in (None, r["impl"])}


def run_conformance(pytester, impl: str, *args: str, workers: int = 0) -> Run:
    """`pytest --pyargs conformance --impl=IMPL ARGS` from a scratch directory, in this process, or
    with `workers` > 0 in a subprocess with that many pytest-xdist workers (`-n`; the test then
    requests the `repo_on_pythonpath` fixture, so tests.broken imports there)."""
    report = pytester.path / "report"
    args = ("--pyargs", "conformance", f"--impl={impl}", f"--conformance-report={report}", "-p", "no:cacheprovider", "-q", *args)
    if workers:
        outcome = pytester.runpytest_subprocess(*args, "-n", str(workers))
    else:
        outcome = pytester.runpytest(*args)
    parsed = json.loads(report.with_suffix(".json").read_text()) if report.with_suffix(".json").exists() else {}
    return Run(outcome, parsed, outcome.stdout.str() + outcome.stderr.str())


BACKENDS = {"torch": "torch", "tensorflow": "tensorflow", "mxnet": "mxnet"}  # --impl name: module


def backend_param(name: str, *values, id=None):
    """pytest.param that skips, saying why, where the backend's framework is not installed."""
    missing = importlib.util.find_spec(BACKENDS[name]) is None
    return pytest.param(*values, id=id or name, marks=pytest.mark.skipif(missing, reason=f"{BACKENDS[name]} is not installed"))
