"""One cause, one finding: the report opens with each root cause once, the contracts it explains, and
the reproduce line that shows it best; a second, independent bug stays a finding of its own.

Each rule is proven both ways on models of our own: the cause found and its follow-ups linked, and the
same model with a second bug, which must not be swallowed."""
import importlib.util

import pytest

from conformance.findings import (
    CONTRACT_CAUSES, CONTRACTS, FLOAT64_UNUSABLE, GRADIENTS_NOT_REPEATABLE, GRADIENTS_WRONG, NOT_DETERMINISTIC)
from tests.broken.common import AUTOREGRESSIVE, GRADIENTS, PADDING
from tests.conformance_run import all_contracts, run_conformance

TORCH = "tests.broken.torch_models"
KERAS2 = "tests.broken.keras2_models"
NOT_CAUSAL = CONTRACT_CAUSES["future_tokens_do_not_change_past_logits"]
STEPWISE = CONTRACT_CAUSES["stepwise_equals_teacher_forced"]
PADDING_CAUSE = CONTRACT_CAUSES["extra_padding_changes_nothing"]


def findings(run) -> list[tuple[str, set, set]]:
    """(cause, contracts whose failure is the cause itself, contracts whose failure follows from it)."""
    return [(f["cause"], set(f["contracts"]), set(f["follow"])) for f in run.report["findings"]]


def messages(run, contract) -> list[str]:
    return [r["message"] for r in run.report["results"] if r["contract"] == contract and r["outcome"] == "failed"]


def needs(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} is not installed")


# --- 1. Random in evaluation mode -------------------------------------------------------------


@needs("tf_keras")
def test_keras2_forward_with_training_on_is_one_finding_judged_in_float64(pytester):
    """d2l's Keras 2 EncoderDecoder passes training=True: only the whole model is random. Its randomness
    is one finding; it no longer loosens the tolerances to float32's (the precision probe saw noise), nor
    reads as "logits do not depend on the encoder's parameters", nor as a causality bug of gradients."""
    run = run_conformance(pytester, f"{KERAS2}:lstm_forward_always_training", "--family=lstm")
    following = {"forward_chains_encoder_and_decoder", *GRADIENTS}
    assert findings(run) == [(NOT_DETERMINISTIC, {"eval_calls_agree_exactly"}, following)]
    dtype = run.report["implementations"][0]["dtypes"]["lstm"]
    assert dtype.startswith("float64 (precision not measured: two identical calls of EncoderDecoder.forward differ by up to"), dtype
    for contract in following:
        for message in messages(run, contract):
            assert "could not judge: it compares calls that do not repeat" in message, message
            assert message.endswith(f"follows from: {NOT_DETERMINISTIC}"), message
    assert not any("logits do not depend" in m for m in run.messages())
    (finding,) = run.report["findings"]
    assert "test_eval_calls_agree_exactly[" in finding["reproduce"] and "-B1-S1-T1]" in finding["reproduce"], "the smallest case"
    follows = {r["contract"]: r["follows_from"] for r in run.report["results"] if r["outcome"] == "failed"}
    assert follows == {"eval_calls_agree_exactly": "", **dict.fromkeys(following, NOT_DETERMINISTIC)}
    report = (pytester.path / "report.md").read_text()
    assert report.index("## Findings") < report.index("| area | contract |"), "the report opens with its findings"
    assert f"(follows from: {NOT_DETERMINISTIC})" in report
    assert "follows from: evaluation is not deterministic" in (pytester.path / "report.html").read_text()
    terminal = run.outcome.stdout.str()
    assert terminal.index("FINDINGS: 1 cause of the 11 failed contract cases") < terminal.index("Conformance matrix")


@needs("tf_keras")
def test_a_bug_the_randomness_does_not_reach_is_a_finding_of_its_own(pytester):
    """The same model whose encoder also reads padding: the encoder and decoder called alone repeat, so
    the padding contracts judge them and fail for their own cause."""
    run = run_conformance(pytester, f"{KERAS2}:lstm_forward_always_training_reads_padding", "--family=lstm")
    assert findings(run) == [
        (NOT_DETERMINISTIC, {"eval_calls_agree_exactly"}, {"forward_chains_encoder_and_decoder", *GRADIENTS}),
        (PADDING_CAUSE, PADDING, set()),
    ]


def test_dropout_left_on_in_the_decoder_explains_every_comparison(pytester):
    """Random decoding fails every contract that compares two decodes; they all follow from one cause,
    and the contracts that compare nothing (shapes, mutation, errors) still pass."""
    run = run_conformance(pytester, f"{TORCH}:lstm_dropout_in_eval", "--family=lstm")
    ((cause, roots, following),) = findings(run)
    assert (cause, roots) == (NOT_DETERMINISTIC, {"eval_calls_agree_exactly"})
    assert following == run.failed - roots and AUTOREGRESSIVE | GRADIENTS <= following
    assert run.report["implementations"][0]["dtypes"]["lstm"].startswith("float64 (precision not measured")


# --- 2. Gradients wrong or not repeatable: said first ---------------------------------------


def test_wrong_float64_gradients_are_found_before_causality_is_blamed(pytester):
    """A causal recurrent model whose float64 backward is wrong (a fused kernel's): the gradient check
    shows it, and the causality of gradients says it cannot judge, instead of calling the model acausal."""
    run = run_conformance(pytester, f"{TORCH}:gru_wrong_float64_gradients", "--family=gru")
    assert findings(run) == [(GRADIENTS_WRONG, {"encoder_gradient_through_state"}, {"future_tokens_do_not_change_past_gradients"})]
    for message in messages(run, "future_tokens_do_not_change_past_gradients"):
        assert "could not judge: the model's gradients are wrong: along a random direction of all its parameters" in message, message


def test_wrong_gradients_do_not_hide_a_decoder_that_sees_the_future(pytester):
    run = run_conformance(pytester, f"{TORCH}:gru_wrong_float64_gradients_peeks_ahead", "--family=gru")
    assert findings(run) == [
        (GRADIENTS_WRONG, {"encoder_gradient_through_state"}, {"future_tokens_do_not_change_past_gradients"}),
        (NOT_CAUSAL, {"future_tokens_do_not_change_past_logits"}, AUTOREGRESSIVE),
    ]


@needs("mxnet")
def test_gradients_that_differ_between_identical_backward_passes_are_one_finding(pytester):
    """MXNet's fused GRU drops out whenever autograd records: only backward passes are random."""
    run = run_conformance(pytester, "tests.broken.mxnet_models:gru_fused_dropout_under_record", "--family=gru")
    assert findings(run) == [(GRADIENTS_NOT_REPEATABLE, set(), GRADIENTS)]
    for contract in GRADIENTS:
        for message in messages(run, contract):
            assert "could not judge: it compares calls that do not repeat: two identical backward passes differ" in message


# --- 3. Reordering judged apart from decoding on --------------------------------------------


def test_a_model_that_decodes_on_wrongly_fails_the_autoregressive_contracts_only(pytester):
    """Positions restart at every call: decoding on is wrong, and reordering the state, compared with the
    same state not reordered, is right."""
    run = run_conformance(pytester, f"{TORCH}:transformer_positions_from_zero", "--family=transformer")
    assert findings(run) == [(STEPWISE, {"stepwise_equals_teacher_forced"},
                              {"chunked_equals_teacher_forced", "greedy_cached_equals_recomputed"})]


def test_a_state_that_cannot_be_reordered_beside_wrong_positions_is_its_own_finding(pytester):
    run = run_conformance(pytester, f"{TORCH}:transformer_positions_from_zero_state_leaf_without_batch_axis",
                          "--family=transformer")
    assert findings(run) == [
        (STEPWISE, {"stepwise_equals_teacher_forced"}, {"chunked_equals_teacher_forced", "greedy_cached_equals_recomputed"}),
        (CONTRACT_CAUSES["state_leaves_have_batch_axis"], {"state_leaves_have_batch_axis"},
         {"reordered_state_decodes_reordered_examples"}),
    ]


# --- 4. float64 unusable: one cause, counted once -------------------------------------------


def test_an_unusable_float64_build_is_one_finding_with_the_header(pytester):
    run = run_conformance(pytester, f"{TORCH}:gru_always_float32_logits", "--family=gru")
    assert findings(run) == [(FLOAT64_UNUSABLE, {"logits_dtype_follows_spec"}, set())]
    (message,) = run.messages()
    assert message.endswith("spec.dtype=float64, but {'logits': 'float32'}: the cause of the header's float32 fallback"), message


def test_a_second_bug_of_a_float32_fallback_is_its_own_finding(pytester):
    run = run_conformance(pytester, f"{TORCH}:gru_float32_logits_reads_padding", "--family=gru")
    assert findings(run) == [(FLOAT64_UNUSABLE, {"logits_dtype_follows_spec"}, set()), (PADDING_CAUSE, PADDING, set())]


# --- What a toolkit's user can say: start ids and decoders limited by design ----------------


def test_one_token_per_call_undeclared_is_one_finding_of_four_contracts(pytester):
    """OpenNMT-py's cached decoder refuses two tokens once it holds a cache: one exception, one finding."""
    run = run_conformance(pytester, "tests.tricky.torch_models:one_token_per_call_undeclared", "--family=transformer")
    ((cause, roots, following),) = findings(run)
    assert cause.startswith("the model raises ValueError: step > 0 takes one token per call, got "), cause
    assert run.report["findings"][0]["sentence"].endswith("declare it (Declared(model, tokens_per_call=1))")
    assert roots | following == {"chunked_equals_teacher_forced", "decode_twice_from_same_state",
                                 "decode_does_not_mutate_state", "reordered_state_decodes_reordered_examples"}


def test_one_token_per_call_declared_skips_chunks_and_still_tests_state_reuse(pytester):
    """Declared, chunks of 2 and 3 are skipped with the reason where a call would need them, and the state
    reuse contracts decode on one token at a time: a cache updated in place is still caught."""
    run = run_conformance(pytester, "tests.tricky.torch_models:one_token_per_call_declared", "--family=transformer",
                          "-k", "chunked")
    skipped = {r["case"]: r["message"] for r in run.report["results"] if r["outcome"] == "skipped"}
    assert set(skipped) == {"B3-S6-T5", "B4-S4-T4"}, skipped  # the cases whose targets need a second call
    assert all("the model declares at most 1 (Declared(tokens_per_call=1))" in m for m in skipped.values())
    assert run.contracts("passed") == {"chunked_equals_teacher_forced"}, "targets one call takes still run"
    caught = run_conformance(pytester, f"{TORCH}:one_token_per_call_cache_updated_in_place", "--family=transformer")
    assert caught.failed == {"decode_does_not_mutate_state", "decode_twice_from_same_state"}


def test_a_declared_start_id_begins_every_decode(pytester):
    """A bug that shows only when the start token comes alone is caught once the start id is declared,
    and never seen where it is only reserved: the suite never fed it."""
    declared = run_conformance(pytester, f"{TORCH}:start_id_not_cached", "--family=transformer", "-k", "autoregressive")
    assert declared.failed == {"stepwise_equals_teacher_forced", "greedy_cached_equals_recomputed"}
    reserved = run_conformance(pytester, f"{TORCH}:start_id_not_cached_undeclared", "--family=transformer", "-k", "autoregressive")
    assert reserved.outcome.ret == 0 and reserved.failed == set()


def test_only_noise_as_large_as_the_disagreement_explains_it():
    """A comparison that fails by far more than the calls it made differ from themselves is a bug of its
    own: a model random at 1e-16 (a GPU's reductions) does not excuse a 1e-3 error."""
    from types import SimpleNamespace

    from conformance.findings import explain
    from conformance.harness import ContractFailure

    model = SimpleNamespace(randomness={"decode": 1e-16, "forward": 0.0}, used={"decode"}, precision="float64", note="",
                            dtype="float64")
    small = ContractFailure("[decode_twice_from_same_state] not identical", compared=True, measured=2e-16)
    large = ContractFailure("[stepwise_equals_teacher_forced] error 1e-3", compared=True, measured=1e-3)
    assert explain("decode_twice_from_same_state", model, small, {}, str(small))[0] == NOT_DETERMINISTIC
    assert explain("stepwise_equals_teacher_forced", model, large, {}, str(large)) == ("", str(large))
    model.used = {"forward"}  # the calls that do not repeat were not made
    assert explain("decode_twice_from_same_state", model, small, {}, str(small)) == ("", str(small))


def test_pytest_n_gives_the_serial_findings(pytester, repo_on_pythonpath):
    """Results reach xdist's controller in any order; the findings, their order and evidence do not change."""
    impls = f"{TORCH}:gru_wrong_float64_gradients_peeks_ahead,{TORCH}:lstm_dropout_in_eval"
    serial = run_conformance(pytester, impls, "--family=gru,lstm", workers=0)
    parallel = run_conformance(pytester, impls, "--family=gru,lstm", workers=2)
    assert len(serial.report["findings"]) == 3 and serial.report["findings"] == parallel.report["findings"]


def test_findings_count_the_outcomes_the_report_counts_as_failing():
    from conformance import findings, report

    assert findings.FAILING == report.FAILING


def test_every_contract_names_its_own_cause_in_the_order_of_the_report():
    """A finding rooted at any contract says what is wrong in words (not '<contract> fails'), new
    contracts included; CONTRACTS, their order, holds every contract once."""
    assert sorted(CONTRACTS) == sorted(all_contracts())
    assert all(cause and not cause.endswith(" fails") for cause in CONTRACT_CAUSES.values())
