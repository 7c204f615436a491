"""True verdicts on code we never wrote: correct models built the way toolkits build them pass every
contract, and each property that once fooled the suite is caught exactly where it is a bug."""
import importlib.util

import pytest

from tests.broken.common import AUTOREGRESSIVE, CACHE_BUG, OUT_OF_VOCABULARY
from tests.conformance_run import (
    all_contracts, assert_cross_framework_skipped_as_undeclared, backend_param, cross_framework_contracts, not_applicable,
    run_conformance)
from tests.tricky.torch_models import CASES

TORCH = "tests.tricky.torch_models"
BROKEN_TORCH = "tests.broken.torch_models"


def dtype_line(run, family) -> str:
    return run.report["implementations"][0]["dtypes"][family]


CORRECT = [pytest.param(f"{TORCH}:{factory}", family, header, id=factory) for factory, family, header in CASES] + [
    backend_param("tensorflow", "tests.tricky.keras3_models:tied_embeddings", "transformer", "float64", id="keras3-tied_embeddings"),
]


@pytest.mark.parametrize("impl, family, header", CORRECT)
def test_correct_toolkit_style_model_passes_every_contract(pytester, impl, family, header):
    run = run_conformance(pytester, impl, f"--family={family}")
    assert run.outcome.ret == 0, "\n".join(run.messages())
    skipped = cross_framework_contracts() | not_applicable(family)
    assert run.contracts("passed") == all_contracts() - skipped
    assert run.contracts("failed", "error") == set() and run.contracts("skipped") == skipped
    assert_cross_framework_skipped_as_undeclared(run, impl)
    line = dtype_line(run, family)
    assert line.startswith(header) if "(" in header else line == header, line  # a note only where one is due


def test_float64_model_with_a_1e_6_bug_is_judged_at_float64_tolerances(pytester):
    """The precision probe is no way out: a true float64 model keeps float64 tolerances, so a cache
    bug that moves logits by ~1e-6 still fails."""
    run = run_conformance(pytester, f"{BROKEN_TORCH}:transformer_cached_attention_off_by_1e5", "--family=transformer")
    assert dtype_line(run, "transformer") == "float64"
    assert run.failed == AUTOREGRESSIVE


def test_undeclared_shared_vocabulary_is_refused_only_by_the_out_of_vocabulary_contract(pytester):
    """Without `Declared(src_vocab=...)` the spec's source size is taken as the model's: that one id is
    a real row, and the source out-of-vocabulary contract says so. Declared, it passes (above)."""
    run = run_conformance(pytester, f"{TORCH}:undeclared_shared_vocabulary", "--family=transformer")
    assert run.failed == {"out_of_vocabulary_source_raises"}
    assert any("src token id 23 (src_vocab=23) gave logits instead of raising" in m for m in run.messages())


def test_undeclared_padding_id_is_drawn_and_breaks_autoregressive_consistency(pytester):
    """OpenNMT-py masks target id 0 in one pass and not when stepping; undeclared, the suite draws 0
    as an ordinary token and the two disagree. Declared, it is never drawn nor chosen (above)."""
    run = run_conformance(pytester, f"{TORCH}:padding_id_undeclared", "--family=transformer")
    assert run.failed and run.failed <= CACHE_BUG, run.failed


def test_state_object_without_a_codec_fails_the_state_contracts_naming_its_type(pytester):
    run = run_conformance(pytester, f"{TORCH}:object_cache_without_codec", "--family=transformer")
    assert run.failed == {
        "logits_dtype_follows_spec", "state_leaves_have_batch_axis", "decode_twice_from_same_state",
        "decode_does_not_mutate_state", "reordered_state_decodes_reordered_examples",
    }
    for message in run.messages():
        assert "tests.tricky.torch_models.UnregisteredCache" in message and "register_state_codec" in message, message


def test_every_state_reuse_case_decodes_from_a_state_that_holds_a_cache(pytester):
    """A cache updated in place only once it exists is caught by the one-step-target cases too: each
    decodes from a state that has seen a target step, never from the bare initial state."""
    run = run_conformance(pytester, f"{BROKEN_TORCH}:object_cache_updated_in_place", "--family=transformer",
                          "-k", "T1 and (mutate or twice)")
    outcomes = [(r["case"], r["outcome"]) for r in run.report["results"]]
    assert sorted(outcomes) == sorted([(case, "failed") for case in ("B1-S1-T1", "B2-S5-T1") for _ in range(2)])


def test_a_model_that_raises_on_every_input_is_an_error_not_a_refusal(pytester):
    run = run_conformance(pytester, f"{BROKEN_TORCH}:raises_in_init_state", "--family=gru", "-k", "out_of_vocabulary")
    assert run.contracts("error") == OUT_OF_VOCABULARY and run.contracts("passed") == set()
    first, *rest = run.messages()
    assert first.endswith("in float32 (decoder.init_state(enc_outputs, valid_lens) raised RuntimeError: decoder cache was "
                          "never allocated)"), first
    assert all(m.endswith("cannot be used for gru: see its first error") for m in rest), rest


def test_a_raise_counts_as_refusing_an_id_only_where_in_vocabulary_ids_work(pytester):
    """A model that raises on the contract's input whatever the ids (its position table is too short)
    refuses no id in particular: both out-of-vocabulary contracts fail and say why."""
    run = run_conformance(pytester, f"{BROKEN_TORCH}:transformer_short_position_table", "--family=transformer",
                          "-k", "out_of_vocabulary")
    assert run.failed == OUT_OF_VOCABULARY
    for message in run.messages():
        assert "the same call with in-vocabulary ids raises too" in message, message


def test_a_family_every_dtype_refuses_is_an_error_with_both_reasons(pytester):
    """Declined for float64 (float32 weights), float64 logits from the float32 build: not all skipped
    with exit 0, but every contract an error, exit 1, both reasons shown."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed")
    run = run_conformance(pytester, "tests.broken.tensorflow_models:float32_build_float64_logits", "--family=gru")
    assert run.outcome.ret == 1
    assert run.contracts("error") == all_contracts() and run.contracts("passed", "skipped") == set()
    message = run.messages()[0]
    assert "unusable in float64 (bridge declined gru/float64: the model computes in ['float32']" in message, message
    assert "and in float32 (logits came back as float64)" in message, message


@pytest.mark.parametrize("backend", [backend_param(b, b) for b in ("torch", "tensorflow", "mxnet")])
def test_an_implementation_that_declines_every_family_is_an_error(pytester, backend):
    run = run_conformance(pytester, f"tests.broken.{backend}_models:declines_transformer", "--family=transformer", "-k", "stepwise")
    assert run.outcome.ret == 1
    assert run.contracts("error") == {"stepwise_equals_teacher_forced"}
    assert "declined every family it was asked for (transformer:" in run.messages()[0]


def test_a_model_of_one_source_width_passes_what_it_can_and_skips_the_rest_saying_why(pytester):
    """Declared(fixed_src_steps=19): every source is 19 frames wide; the contracts that need another width
    are skipped with the reason, never failed nor passed. Undeclared, the model is unusable: an error."""
    run = run_conformance(pytester, f"{TORCH}:speech_fixed_width", "--family=speech")
    assert run.outcome.ret == 0, "\n".join(run.messages())
    other_widths = {"extra_padding_changes_nothing", "encoder_lengths_are_as_declared"}
    assert run.contracts("skipped") == cross_framework_contracts() | not_applicable("speech") | other_widths
    assert run.contracts("passed") == all_contracts() - run.contracts("skipped")
    reasons = {r["message"] for r in run.report["results"] if r["contract"] in other_widths}
    assert all("the model takes sources of exactly 19 frames (Declared(fixed_src_steps=19))" in m for m in reasons), reasons
    undeclared = run_conformance(pytester, f"{TORCH}:speech_fixed_width_undeclared", "--family=speech", "-k", "stepwise")
    assert undeclared.outcome.ret == 1 and undeclared.contracts("error") == {"stepwise_equals_teacher_forced"}
    assert "raised ValueError: this encoder takes 19 frames, not 11" in undeclared.messages()[0], undeclared.messages()


def test_a_subsampling_encoder_that_does_not_declare_its_lengths_fails_only_that_contract(pytester):
    """The speech reference without its Declared(encoder_lengths=...): one encoder position per four
    frames, where the suite assumes one per frame. The contract says what to declare; padding holds."""
    run = run_conformance(pytester, "impls.torch:make_model", "--family=speech")
    assert run.failed == {"encoder_lengths_are_as_declared"}, "\n".join(run.messages())
    message, = run.messages()
    assert "for a source of 2 frames run alone, unpadded, but 2 are declared (Declared(encoder_lengths=...)" in message, message
