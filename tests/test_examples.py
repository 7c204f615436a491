"""The worked examples get the verdicts written beside them (each module's FAMILY and EXPECTED)."""
import importlib
import importlib.util
import pathlib

import pytest

from tests.conformance_run import (
    all_contracts, assert_cross_framework_skipped_as_undeclared, cross_framework_contracts, run_conformance)

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
# example: what it needs beyond torch
NEEDS = {"gluon_d2l_gru": ("mxnet",), "keras2_d2l": ("tf_keras",), "hf_marian_onnx": ("transformers", "onnxruntime", "onnx")}


def examples(table: str = "EXPECTED"):
    """(example, factory, family, failures) for each factory of each example's `table`."""
    for path in sorted(EXAMPLES.glob("*.py")):
        if path.stem == "__init__":
            continue
        missing = [m for m in NEEDS.get(path.stem, ("torch",)) if importlib.util.find_spec(m) is None]
        if missing:
            yield pytest.param(path.stem, None, None, set(), marks=pytest.mark.skip(reason=f"{', '.join(missing)} not installed"))
            continue
        module = importlib.import_module(f"examples.{path.stem}")
        for factory, failures in getattr(module, table, {}).items():
            yield pytest.param(path.stem, factory, module.FAMILY, failures, id=f"{path.stem}:{factory}")


@pytest.mark.parametrize("example, factory, family, failures", examples())
def test_example_gets_the_verdict_written_beside_it(pytester, example, factory, family, failures):
    run = run_conformance(pytester, f"examples.{example}:{factory}", f"--family={family}")
    assert run.failed == failures, "\n".join(run.messages())
    assert run.contracts("passed") == all_contracts() - failures - cross_framework_contracts() - gradients_declined(run)
    if not hasattr(importlib.import_module(f"examples.{example}"), "SOURCE"):
        assert_cross_framework_skipped_as_undeclared(run, f"examples.{example}:{factory}")
    assert run.outcome.ret == (1 if failures else 0)


def gradients_declined(run) -> set[str]:
    """The gradient contracts of a model that declines gradients (an exported graph), skipped with its reason."""
    return {r["contract"] for r in run.report["results"] if r["outcome"] == "skipped" and "no gradients" in r["message"]}


@pytest.mark.parametrize("example, factory, family, failures", examples("EXPECTED_AGAINST_SOURCE"))
def test_export_against_its_source(pytester, example, factory, family, failures):
    """An example that pairs an export with the model it came from (SOURCE, the same Declared
    weights_id): compared as --reference, with the difference in the report's matrix."""
    source = f"examples.{example}:{importlib.import_module(f'examples.{example}').SOURCE}"
    impl = f"examples.{example}:{factory}"
    run = run_conformance(pytester, impl, f"--reference={source}", f"--family={family}")
    assert run.failed == failures, "\n".join(run.messages())
    compared = {r["contract"] for r in run.report["results"] if r["area"] == "cross_framework" and r["outcome"] == "passed"}
    assert compared | failures >= {"logits_match_reference", "greedy_tokens_match_reference"}, "the pair was not compared"
    difference = next(d for d in run.report["differences"] if d["pair"] == [impl, source])
    bound = 1e-10 if difference["dtypes"] == "float64" else 1e-5
    assert (difference["max_relative_difference"] > bound) == ("logits_match_reference" in failures), difference
