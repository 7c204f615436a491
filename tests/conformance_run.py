"""Running the conformance plugin inside a test, as a user would, and reading its report."""
import dataclasses
import importlib
import importlib.util
import json
import pathlib
import re

import pytest

from conformance.report import FAILING  # outcomes that fail the run, with a message each
from conformance.sources import kind_of
from conformance.spec import FAMILIES

REPO = pathlib.Path(__file__).resolve().parents[1]


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


def all_contracts(area: str = "*") -> set[str]:
    """Every `def test_...` in the shipped contract modules (of one area), without the prefix."""
    root = pathlib.Path(importlib.import_module("conformance").__file__).parent
    return {name for path in root.glob(f"test_{area}.py") for name in re.findall(r"^def test_(\w+)", path.read_text(), re.M)}


# Contracts that do not apply to a kind of source: skipped, saying why (conformance/sources.py).
NOT_APPLICABLE = {
    "tokens": {"wrong_source_size_raises"},
    "frames": {"out_of_vocabulary_source_raises"},
    "images": {"out_of_vocabulary_source_raises", "extra_padding_changes_nothing",
               "garbage_beyond_valid_length_changes_nothing", "encoder_lengths_are_as_declared"},
}


def not_applicable(family: str) -> set[str]:
    return NOT_APPLICABLE[kind_of(family)]


def ported(backend: str) -> list[str]:
    """The families `impls.<backend>` has a reference of; it declines the others (Unsupported)."""
    return list(importlib.import_module(f"impls.{backend}.factory").BUILDERS)


def family_params(backend: str) -> list:
    """Every family as a pytest param; those `impls.<backend>` has no reference of yet skip, saying so
    (call it where the backend's framework is importable)."""
    have = ported(backend)
    return [pytest.param(family, marks=pytest.mark.skipif(family not in have, reason=f"impls.{backend} has no {family} reference yet"))
            for family in FAMILIES]


def cross_framework_contracts() -> set[str]:
    """Skipped, saying why, for a model that does not declare it loads canonical weights."""
    return all_contracts("cross_framework")


def assert_cross_framework_skipped_as_undeclared(run, impl: str) -> None:
    reasons = {r["message"] for r in run.report["results"] if r["impl"] == impl and r["area"] == "cross_framework"}
    assert reasons == {f"Skipped: {impl} does not declare that it loads canonical weights (spec.weights; docs/weights.md says how)"}, reasons


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


BACKENDS = {"torch": "torch", "tensorflow": "tensorflow", "mxnet": "mxnet"}  # built-in --impl name: module
FRAMEWORKS = {**BACKENDS, "keras2": "tf_keras", "onnxruntime": "onnxruntime"}  # tests/broken/<name>_models.py: the module it needs


def backend_param(name: str, *values, id=None):
    """pytest.param that skips, saying why, where the backend's framework is not installed."""
    missing = importlib.util.find_spec(FRAMEWORKS[name]) is None
    return pytest.param(*values, id=id or name, marks=pytest.mark.skipif(missing, reason=f"{FRAMEWORKS[name]} is not installed"))
