"""Every contract can fail: deliberately broken models are caught by exactly the contracts that should
catch them, and the reference implementations pass every contract."""
import importlib
import importlib.util
import re

import pytest

from conformance.spec import FAMILIES
from tests.conformance_run import BACKENDS, FRAMEWORKS, all_contracts, backend_param, not_applicable, ported, run_conformance


def broken_cases():
    """(impl, family, expected failures) for every broken model of every installed backend."""
    for backend, framework in FRAMEWORKS.items():
        module_name = f"tests.broken.{backend}_models"
        if importlib.util.find_spec(framework) is None:
            yield backend_param(backend, None, None, set(), id=f"{backend}-not-installed")
            continue
        for factory, family, expected in importlib.import_module(module_name).CASES:
            yield pytest.param(f"{module_name}:{factory}", family, expected, id=f"{backend}-{factory}")


@pytest.mark.parametrize("impl, family, expected", broken_cases())
def test_broken_model_fails_exactly_the_expected_contracts(pytester, impl, family, expected):
    run = run_conformance(pytester, impl, f"--family={family}")
    assert run.failed == expected, (
        f"{impl} ({family}): failed {sorted(run.failed)}, expected {sorted(expected)}\n" + "\n".join(run.messages())
    )
    assert "Traceback" not in run.output, "a contract failure printed a traceback instead of one line"


def test_every_contract_is_caught_by_some_broken_model():
    caught = set().union(*(expected for *_, expected in (p.values for p in broken_cases())))
    assert all_contracts() - caught == set(), f"contracts no broken model trips: {sorted(all_contracts() - caught)}"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("impl", [backend_param(name, name) for name in BACKENDS])
def test_reference_passes_every_contract_of_each_family(pytester, impl, family):
    """Every contract that applies to the family's source passes; the others are skipped saying why.
    One run per family, so that pytest -n spreads them over its workers."""
    if family not in ported(impl):
        pytest.skip(f"impls.{impl} has no {family} reference yet")
    run = run_conformance(pytester, impl, f"--family={family}")
    assert run.outcome.ret == 0, "\n".join(run.messages())
    outcomes = {(m["family"], m["contract"]): m["outcome"] for m in run.report["matrix"]}
    assert outcomes == {(family, contract): "skipped" if contract in not_applicable(family) else "passed"
                        for contract in all_contracts()}
    for result in (r for r in run.report["results"] if r["outcome"] == "skipped"):
        assert f"Skipped: [{result['contract']}] " in result["message"], result["message"]


@pytest.mark.parametrize("impl, family, compared", [
    backend_param("torch", "tests.broken.torch_models:speech_convolution_reads_padding", "speech",
                  r"encoder output \[0\] of example \d within its declared encoder length \d+ \(with \d extra padding frames; ",
                  id="time-axis"),
    backend_param("torch", "tests.broken.torch_models:gru_encoder_reads_padding", "gru",
                  r"encoder output \[1\] of example \d, a leaf with no time axis \(a final state\), compared whole \(with \d "
                  r"extra padding columns\)", id="final-state"),
])
def test_a_padding_failure_says_how_the_leaf_was_compared(pytester, impl, family, compared):
    """An encoder output with a time axis is compared within each example's declared length; a final
    state, which has none, whole: the message says which, so a state that read padding is not blamed on
    a length."""
    run = run_conformance(pytester, impl, f"--family={family}", "-k", "extra_padding")
    messages = [m for m in run.messages() if m.startswith("[extra_padding_changes_nothing] ")]
    assert messages and all(re.search(compared, m) for m in messages), messages
