"""The worked examples get the verdicts written beside them (each module's FAMILY and EXPECTED)."""
import importlib
import importlib.util
import pathlib

import pytest

from tests.conformance_run import (
    all_contracts, assert_cross_framework_skipped_as_undeclared, cross_framework_contracts, not_applicable, run_conformance)

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
NEEDS = {"gluon_d2l_gru": "mxnet", "keras2_d2l": "tf_keras"}  # example: framework it needs beyond torch


def examples():
    for path in sorted(EXAMPLES.glob("*.py")):
        if path.stem == "__init__":
            continue
        framework = NEEDS.get(path.stem, "torch")
        if importlib.util.find_spec(framework) is None:
            yield pytest.param(path.stem, None, None, set(), marks=pytest.mark.skip(reason=f"{framework} is not installed"))
            continue
        module = importlib.import_module(f"examples.{path.stem}")
        for factory, failures in module.EXPECTED.items():
            yield pytest.param(path.stem, factory, module.FAMILY, failures, id=f"{path.stem}:{factory}")


@pytest.mark.parametrize("example, factory, family, failures", examples())
def test_example_gets_the_verdict_written_beside_it(pytester, example, factory, family, failures):
    run = run_conformance(pytester, f"examples.{example}:{factory}", f"--family={family}")
    assert run.failed == failures, "\n".join(run.messages())
    assert run.contracts("passed") == all_contracts() - failures - cross_framework_contracts() - not_applicable(family)
    assert_cross_framework_skipped_as_undeclared(run, f"examples.{example}:{factory}")
    assert run.outcome.ret == (1 if failures else 0)
