"""A user's way in: the factory module beside them is found, and every failure's reproduce line reruns
that contract as printed, from where the suite ran, with the same numbers."""
import re
import shlex

from tests.conformance_run import run_conformance

BROKEN = "tests.broken.torch_models:transformer_top_left_mask"


def test_printed_reproduce_command_reruns_the_contract_with_the_same_numbers(pytester):
    run = run_conformance(pytester, BROKEN, "--family=transformer", "-k", "stepwise and B3")
    (verdict,) = run.messages()
    command = re.search(r"reproduce: (.*)", run.output).group(1)
    again = pytester.runpytest(*shlex.split(command)[1:], "-p", "no:cacheprovider")
    assert again.ret == 1, again.stdout.str()
    assert verdict in again.stdout.str(), "the same verdict, the same numbers"


def test_factory_module_beside_the_user_is_found_as_python_m_would(pytester):
    pytester.makepyfile(mymodel="from impls.torch import make_model\n")
    run = run_conformance(pytester, "mymodel:make_model", "--family=gru", "-k", "stepwise")
    assert run.outcome.ret == 0, run.output
    assert run.contracts("passed") == {"stepwise_equals_teacher_forced"}


def test_collect_only_prints_no_conformance_report(pytester):
    outcome = pytester.runpytest("--pyargs", "conformance", "--impl=torch", "--family=gru", "--collect-only", "-q",
                                 "-p", "no:cacheprovider")
    assert outcome.ret == 0
    assert "conformance report" not in outcome.stdout.str() and "Conformance matrix" not in outcome.stdout.str()
