"""Keras 2 (tf_keras) models written as d2l writes them get every contract, as Keras 3 models do, in the
same process as a Keras 3 model; the report tells the two apart."""
import importlib

import pytest

from conformance.spec import FAMILIES
from tests.conformance_run import all_contracts, cross_framework_contracts, not_applicable, run_conformance

tf_keras = pytest.importorskip("tf_keras", reason="tf_keras is not installed")

TRICKY = "examples.keras2_d2l:make_model"
COVERED = {"rnn", "gru", "lstm", "bahdanau"}  # the families it does not cover, it declines
EXAMPLE_FAMILY = importlib.import_module("examples.keras2_d2l").FAMILY  # tests/test_examples.py runs it


def test_keras2_models_pass_every_contract_of_the_families_they_cover(pytester):
    """Every family but rnn, which the next test runs beside a Keras 3 model, and the example's own (its
    FAMILY, run by tests/test_examples.py): each run of Keras 2's eager calls costs ~10 s a family."""
    families = [family for family in FAMILIES if family not in ("rnn", EXAMPLE_FAMILY)]
    run = run_conformance(pytester, TRICKY, f"--family={','.join(families)}")
    assert run.outcome.ret == 0, "\n".join(run.messages())
    outcomes = {(m["family"], m["contract"]): m["outcome"] for m in run.report["matrix"]}
    skipped = cross_framework_contracts() | not_applicable("gru")
    assert outcomes == {
        (family, contract): "passed" if family in COVERED and contract not in skipped else "skipped"
        for family in families for contract in all_contracts()
    }
    skips = {r["message"] for r in run.report["results"]
             if r["outcome"] == "skipped" and r["area"] != "cross_framework" and r["family"] not in COVERED}
    assert skips == {
        f"Skipped: {TRICKY} declined {family}/float64: no Keras 2 port of d2l's {family}" for family in set(FAMILIES) - COVERED
    }


def test_keras2_and_keras3_models_in_one_run(pytester):
    run = run_conformance(pytester, f"{TRICKY},tensorflow", "--family=rnn")
    assert run.outcome.ret == 0, "\n".join(run.messages())
    applicable = [m for m in run.report["matrix"] if m["area"] != "cross_framework" and m["contract"] not in not_applicable("rnn")]
    assert {(m["impl"], m["outcome"]) for m in applicable} == {(TRICKY, "passed"), ("tensorflow", "passed")}
    assert {(m["impl"], m["outcome"]) for m in run.report["matrix"] if m["area"] == "cross_framework"} == {
        (TRICKY, "skipped"), ("tensorflow", "passed")}, "d2l's Keras 2 code does not load canonical weights; ours does"
    assert len(run.report["matrix"]) == 2 * len(all_contracts()), "every contract has a verdict for each"
    run.outcome.stdout.fnmatch_lines([
        f"{TRICKY} ({TRICKY}): backend tensorflow * (tf_keras {tf_keras.__version__}), device *; rnn float64",
        "tensorflow (conformance_impls.tensorflow:factory): backend tensorflow * (keras 3.*), device *; rnn float64",
    ])
