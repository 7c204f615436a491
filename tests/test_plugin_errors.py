"""Bad input gets one clear line, and the rest of the run completes with its report written."""
import pytest

from tests.conformance_run import (
    BACKENDS, assert_cross_framework_skipped_as_undeclared, backend_param, cross_framework_contracts, not_applicable,
    run_conformance)

FAULTY = "tests.broken.faulty"  # faults whatever the framework; per-backend ones are in <backend>_models


def assert_one_line_failures(run, expected_text):
    """Every failure is one line; the first names `expected_text`, and each later one either names it
    too or, for a model that could not be used at all, refers back to that first line."""
    messages = run.messages()
    assert messages and expected_text in messages[0], messages
    for message in messages:
        assert expected_text in message or message.endswith("cannot be used for gru: see its first error"), message
        assert "\x1b[" not in message, f"terminal escape codes in {message!r}"
    assert "Traceback" not in run.output


def test_unknown_impl_name_fails_once_and_other_impls_still_run(pytester):
    run = run_conformance(pytester, "torch,nosuch", "--family=gru", "-k", "stepwise")
    assert run.outcome.ret == 1
    run.outcome.stdout.fnmatch_lines(["FAILED *--impl=nosuch - --impl=nosuch: unknown implementation 'nosuch'*"])
    assert run.contracts("passed") == {"stepwise_equals_teacher_forced"}, "torch's contracts still ran"
    assert [i["error"] for i in run.report["implementations"] if i["name"] == "nosuch"][0].startswith("unknown implementation")
    assert "Traceback" not in run.output


def test_impl_module_that_does_not_import(pytester):
    run = run_conformance(pytester, "no_such_package.models:make_model", "--family=gru")
    assert run.outcome.ret == 1
    run.outcome.stdout.fnmatch_lines(["*cannot import 'no_such_package.models': ModuleNotFoundError*"])
    assert run.report["implementations"][0]["error"]
    assert "Traceback" not in run.output


def test_impl_attribute_that_is_missing(pytester):
    run = run_conformance(pytester, f"{FAULTY}:no_such_factory", "--family=gru")
    run.outcome.stdout.fnmatch_lines(["*has no callable 'no_such_factory'*"])


def test_factory_that_raises(pytester):
    run = run_conformance(pytester, f"{FAULTY}:factory_raises", "--family=gru", "-k", "stepwise or logits_shape")
    assert run.outcome.ret == 1
    assert_one_line_failures(run, "raised ValueError: checkpoint weights.safetensors not found")
    assert run.contracts("error") == {"stepwise_equals_teacher_forced", "logits_shape"}
    assert sum("checkpoint weights.safetensors not found" in m for m in run.messages()) == 1, "the reason once"
    reproduce_lines = {line for line in run.outcome.stdout.lines if line.startswith("  reproduce: ")}  # (CI repeats it)
    assert len(reproduce_lines) == 1, "one reproduce command, for the one full failure"
    run.outcome.stdout.fnmatch_lines(["*:factory_raises (*): gru: unusable in float64 (factory * raised ValueError*"])


@pytest.mark.parametrize("factory, returned, bases", [
    ("returns_a_string", "a str, which no bridge accepts: neither a conformance.Seq2SeqAdapter nor", "object"),
    ("returns_its_weights", "a collections.OrderedDict, which no bridge accepts", "dict, object"),
])
def test_factory_that_returns_no_model(pytester, factory, returned, bases):
    run = run_conformance(pytester, f"{FAULTY}:{factory}", "--family=gru", "-k", "stepwise")
    assert_one_line_failures(run, f"the factory returned {returned}")
    assert_one_line_failures(run, f"(bases: {bases})")


BAD_OUTPUTS = [
    ("nan_logits", "NaN and 0 infinite logits"),
    ("time_major_logits", "but should be (batch, steps, tgt_vocab)"),
    ("raises_in_init_state", "decoder cache was never allocated"),
]


@pytest.mark.parametrize(
    "impl, text",
    [backend_param(b, f"tests.broken.{b}_models:{f}", text, id=f"{b}-{f}") for b in BACKENDS for f, text in BAD_OUTPUTS]
    + [pytest.param(f"{FAULTY}:integer_logits", "should return a floating array", id="torch-integer_logits"),
       pytest.param(f"{FAULTY}:returns_no_state", "returned None as the state, but should return the state for the next call",
                    id="torch-returns_no_state")],
)
def test_bad_model_fails_every_contract_with_one_line(pytester, impl, text):
    run = run_conformance(pytester, impl, "--family=gru", "-k", "stepwise or padding or determinism")
    assert run.outcome.ret == 1
    assert_one_line_failures(run, text)
    assert run.failed == {  # failed, or errored where the factory itself runs the model once
        "stepwise_equals_teacher_forced", "extra_padding_changes_nothing",
        "garbage_beyond_valid_length_changes_nothing", "eval_calls_agree_exactly", "eval_calls_leave_model_unchanged",
    }


def test_hanging_model_times_out_and_the_run_goes_on(pytester):
    run = run_conformance(pytester, f"{FAULTY}:hangs_in_decoder", "--family=gru", "--conformance-timeout=3",
                          "-k", "stepwise and (B1 or B3)")
    assert run.outcome.ret == 1
    assert_one_line_failures(run, "did not finish within 3s (--conformance-timeout)")
    assert len(run.report["results"]) == 2, "both contracts ran and were reported"


def test_factory_that_hangs_is_stopped_before_any_contract(pytester):
    run = run_conformance(pytester, f"{FAULTY}:hangs_in_factory", "--family=gru", "--conformance-timeout=2", "-k", "stepwise")
    assert run.outcome.ret == 1
    assert_one_line_failures(run, "raised TimeoutError: did not finish within 2s")
    assert run.outcome.duration < 30, "the factory is given up on once, not once per contract"


def test_sys_exit_while_the_suite_first_tries_a_model_is_the_models_failure(pytester):
    """sys.exit(0) in the model's first decode (the suite's smoke test, before any contract) fails
    that model with one line; the implementation beside it keeps every verdict."""
    run = run_conformance(pytester, f"{FAULTY}:sys_exit_on_first_try,torch", "--family=gru", "-k", "stepwise or eval_calls_agree")
    assert run.outcome.ret == 1
    assert_one_line_failures(run, "unusable in float64 (decoder.forward(X of shape (2, 2), state) raised SystemExit: 0)")
    assert set(run.verdicts("torch").values()) == {"passed"} and len(run.verdicts("torch")) == 8
    assert set(run.verdicts(f"{FAULTY}:sys_exit_on_first_try").values()) == {"error"}
    assert "INTERNALERROR" not in run.output


@pytest.mark.parametrize("factory, text", [
    ("sys_exit_in_decoder", "decoder.forward(X of shape (1, 1), state) raised SystemExit: 0"),
    ("base_exception_in_decoder", "decoder.forward(X of shape (1, 1), state) raised ModelsOwnBaseException: the decoder gave up"),
])
def test_exit_or_base_exception_inside_a_contract_is_one_line(pytester, factory, text):
    run = run_conformance(pytester, f"{FAULTY}:{factory},torch", "--family=gru", "-k", "stepwise")
    assert run.outcome.ret == 1
    assert_one_line_failures(run, text)
    assert run.messages() == [f"[stepwise_equals_teacher_forced] {text}"]
    assert "model = <" not in run.output, "a traceback of the harness"
    assert set(run.verdicts("torch").values()) == {"passed"}


@pytest.mark.parametrize("backend", [backend_param(b, b) for b in BACKENDS])
def test_declined_family_is_skipped_with_the_reason(pytester, backend):
    run = run_conformance(pytester, f"tests.broken.{backend}_models:declines_transformer", "--family=gru,transformer",
                          "-k", "stepwise", "-rs")
    assert run.outcome.ret == 0
    run.outcome.stdout.fnmatch_lines(["SKIPPED*declined transformer/float64: this port has no Transformer yet*"])
    outcomes = {(m["family"], m["outcome"]) for m in run.report["matrix"]}
    assert outcomes == {("gru", "passed"), ("transformer", "skipped")}


def test_a_source_the_model_cannot_take_is_skipped_with_its_reason(pytester):
    """A token model whose factory declines frames and images: those families skip, saying why; the
    token family runs. Asked only for what it cannot take, the model is unusable (exit 1)."""
    run = run_conformance(pytester, f"{FAULTY}:token_ids_only", "--family=gru,speech,captioning", "-k", "stepwise", "-rs")
    assert run.outcome.ret == 0, "\n".join(run.messages())
    assert {(m["family"], m["outcome"]) for m in run.report["matrix"]} == {
        ("gru", "passed"), ("speech", "skipped"), ("captioning", "skipped")}
    run.outcome.stdout.fnmatch_lines(["SKIPPED*declined speech/float64: this model reads token ids, not frames*",
                                      "SKIPPED*declined captioning/float64: this model reads token ids, not images*"])


def test_a_model_built_for_another_feature_count_is_one_clear_error(pytester):
    """A speech model built for 80 features, given the spec's 8: every contract errors in one line, the
    first with the model's own error and the sizes of the source it was given."""
    run = run_conformance(pytester, f"{FAULTY}:built_for_80_features", "--family=speech", "-k", "stepwise or wrong_source")
    assert run.outcome.ret == 1
    first, *rest = run.messages()
    assert "to have 80 channels, but got 8 channels instead" in first, first
    assert first.endswith("; the source it was given: frames (batch, frames, 8): spec.num_features=8"), first
    assert rest and all(m.endswith("cannot be used for speech: see its first error") for m in rest), rest
    assert "Traceback" not in run.output


def test_own_adapter_object_passes_every_contract(pytester):
    """Every contract but those that need what the adapter does not offer (get_buffers, an optional
    method) or that do not apply to its source, each skipped with the reason."""
    run = run_conformance(pytester, f"{FAULTY}:own_adapter", "--family=transformer")
    assert run.outcome.ret == 0, "\n".join(run.messages())
    without_buffers = {"eval_calls_leave_model_unchanged"}
    skipped = cross_framework_contracts() | not_applicable("transformer") | without_buffers
    assert run.contracts("failed", "error") == set() and run.contracts("skipped") == skipped
    reason, = {r["message"] for r in run.report["results"] if r["contract"] in without_buffers}
    assert "the adapter has no get_buffers()" in reason, reason
    assert_cross_framework_skipped_as_undeclared(run, f"{FAULTY}:own_adapter")
    assert run.report["implementations"][0]["backend"] == "custom"


@pytest.mark.parametrize("impl, reason", [
    backend_param("torch", "torch", "bridge declined gru/float64 on cuda:7: torch sees "),
    backend_param("tensorflow", "tensorflow", "bridge declined gru/float64 on cuda:7: tensorflow sees "),
    backend_param("mxnet", "mxnet", "bridge declined gru/float64 on cuda:7: mxnet sees "),
    ("numpy", "declined gru/float64 on cuda:7: the NumPy specification runs on the cpu only, not on cuda:7"),
    (f"{FAULTY}:own_adapter", "built gru on cpu, not on cuda:7"),  # an adapter of the user's own is not moved
], ids=["torch", "tensorflow", "mxnet", "numpy", "own-adapter"])
def test_a_device_the_model_cannot_run_on_makes_it_unusable(pytester, impl, reason):
    """--device reaches the factory in its spec. A device that no framework here sees (no machine has
    cuda:7), or one the factory or its adapter is not on, declines every family: an error of the run
    (exit 1) with the reason, never a run of skips that passes."""
    run = run_conformance(pytester, impl, "--family=gru", "--device=cuda:7", "-k", "stepwise")
    assert run.outcome.ret == 1
    assert_one_line_failures(run, "declined every family it was asked for (gru: ")
    assert reason in run.messages()[0]
    assert "--device=cuda:7" in run.output, "the reproduce line names the device"


def usage_error(pytester, *args):
    """The output of a run stopped by a command-line mistake, after asserting it is one clean line, exit 4."""
    # The outer pytest imported the plugin already, so the inner one warns that it cannot rewrite it.
    outcome = pytester.runpytest("--pyargs", "conformance", "-p", "no:cacheprovider",
                                 "-W", "ignore::pytest.PytestAssertRewriteWarning", *args)
    output = outcome.stdout.str() + "\n" + outcome.stderr.str()
    assert outcome.ret == 4, output
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, output
    for noise in ("INTERNALERROR", "Traceback", "_pytest", "Exit:", "usage:"):
        assert noise not in output, output
    return errors[0]


def test_no_impl_is_a_usage_error(pytester):
    assert usage_error(pytester) == "ERROR: no implementation chosen: pass --impl=torch (or tensorflow, mxnet, numpy, onnxruntime, module:factory)"


@pytest.mark.parametrize("args, line", [
    (["--impl="], "ERROR: --impl is empty: pass --impl=torch (or tensorflow, mxnet, numpy, onnxruntime, module:factory)"),
    (["--impl=,"], "ERROR: --impl is empty: pass --impl=torch (or tensorflow, mxnet, numpy, onnxruntime, module:factory)"),
    (["--impl=torch", "--xfails-file=no/such/xfails.txt"], "ERROR: --xfails-file=no/such/xfails.txt: no such file"),
    (["--impl=torch", "--conformance-seed=-1"], "ERROR: --conformance-seed=-1: a seed is 0 or more"),
    (["--impl=torch", "--conformance-timeout=0"], "ERROR: --conformance-timeout=0: the limit must be more than 0 seconds"),
    (["--impl=torch", "--conformance-timeout=-5"], "ERROR: --conformance-timeout=-5: the limit must be more than 0 seconds"),
    (["--impl=torch", "--conformance-threads=0"], "ERROR: --conformance-threads=0: at least 1"),
    (["--impl=torch", "--device=tpu"], "ERROR: --device=tpu: device 'tpu': use cpu, cuda or cuda:N"),
], ids=["empty-impl", "only-commas", "missing-xfails-file", "negative-seed", "zero-timeout", "negative-timeout", "zero-threads",
        "unknown-device"])
def test_command_line_mistake_is_one_line(pytester, args, line):
    assert usage_error(pytester, *args) == line


def test_report_under_a_file_is_refused_before_any_contract_runs(pytester):
    pytester.makefile(".txt", notadir="")
    line = usage_error(pytester, "--impl=torch", "--conformance-report=notadir.txt/sub/report")
    assert line == f"ERROR: --conformance-report=notadir.txt/sub/report: cannot write under {pytester.path / 'notadir.txt'}, which is a file"


def test_impl_named_twice_runs_once(pytester):
    run = run_conformance(pytester, "torch,torch", "--family=gru", "-k", "eval_calls_agree")
    assert run.outcome.ret == 0
    ids = [r["nodeid"].split("[")[1] for r in run.report["results"]]
    assert len(ids) == len(set(ids)) == 4 and all(id_.startswith("torch-gru-B") for id_ in ids), ids


def test_report_is_written_as_json_and_markdown_with_the_header(pytester):
    run = run_conformance(pytester, "torch", "--family=lstm", "-k", "determinism", "-v")  # -v: the header shows
    impl = run.report["implementations"][0]
    assert (impl["backend"], impl["device"], impl["dtypes"]) == ("torch", "cpu", {"lstm": "float64"})
    assert impl["framework_version"].startswith("2.")
    markdown = (pytester.path / "report.md").read_text()
    assert "| determinism | eval_calls_agree_exactly | ✓ |" in markdown
    run.outcome.stdout.fnmatch_lines(["conformance: seed 0*", "*backend torch 2.*, device cpu; lstm float64*"])


def test_xfails_file_marks_known_failures_and_warns_about_unmatched_ids(pytester):
    xfails = pytester.makefile(".txt", xfails="""
        # known: this port clamps out-of-range ids
        test_errors.py::test_out_of_vocabulary_source_raises
        test_errors.py::test_out_of_vocabulary_target_raises[tests.broken.torch_models:gru_clamps_out_of_vocabulary-gru-vocab_size]
        test_errors.py::test_no_such_contract
    """)
    run = run_conformance(pytester, "tests.broken.torch_models:gru_clamps_out_of_vocabulary", "--family=gru",
                          "-k", "test_out_of_vocabulary", f"--xfails-file={xfails}")
    outcomes = {(r["contract"], r["case"] or r["nodeid"].rsplit("-", 1)[-1], r["outcome"]) for r in run.report["results"]}
    assert {o for *_, o in outcomes} == {"xfailed", "failed"}
    assert run.contracts("failed") == {"out_of_vocabulary_target_raises"}, "only the listed target case is xfailed"
    run.outcome.stdout.fnmatch_lines(["*--xfails-file id matches no test: test_errors.py::test_no_such_contract*"])


def test_xfails_file_id_of_a_test_that_k_deselected_is_not_warned_about(pytester):
    xfails = pytester.makefile(".txt", xfails="""
        test_determinism.py::test_eval_calls_agree_exactly
        test_no_such_file.py
    """)
    run = run_conformance(pytester, "torch", "--family=gru", "-k", "stepwise", f"--xfails-file={xfails}")
    assert run.outcome.ret == 0
    assert "matches no test: test_determinism.py" not in run.output, "the id names a test that -k deselected"
    run.outcome.stdout.fnmatch_lines(["*--xfails-file id matches no test: test_no_such_file.py*"])


def test_integer_logits_in_a_gradient_contract_name_the_dtype(pytester):
    run = run_conformance(pytester, f"{FAULTY}:integer_logits", "--family=gru", "-k", "gradient")
    assert run.outcome.ret == 1
    assert_one_line_failures(run, "returned logits of type int64, but should return a floating array")
    assert run.failed == {"encoder_gradient_through_state", "future_tokens_do_not_change_past_gradients"}


def test_an_xfails_id_prefix_ends_at_a_part_of_the_id(pytester):
    """A line `t` once turned every failure of a broken model into an xfail (exit 0, no warning): a
    prefix names tests only where a part of their id ends (`::`, `[`, `-`, `]`, `/`)."""
    xfails = pytester.makefile(".txt", xfails="t\ntest_errors.py::test_out_of_vocabulary_source_raises[tests.broken.torch_models")
    run = run_conformance(pytester, "tests.broken.torch_models:gru_clamps_out_of_vocabulary", "--family=gru", "-k", "raises",
                          f"--xfails-file={xfails}")
    assert run.outcome.ret == 1
    assert run.contracts("failed") == {"out_of_vocabulary_source_raises", "out_of_vocabulary_target_raises"}
    run.outcome.stdout.fnmatch_lines(["*--xfails-file id matches no test: t", "*--xfails-file id matches no test: "
                                      "test_errors.py::test_out_of_vocabulary_source_raises[tests.broken.torch_models"])


def test_an_xfails_line_that_marks_several_contracts_or_implementations_is_warned_about(pytester):
    xfails = pytester.makefile(".txt", xfails="test_errors.py\ntest_errors.py::test_out_of_vocabulary_target_raises[torch-")
    run = run_conformance(pytester, "tests.broken.torch_models:gru_clamps_out_of_vocabulary,torch", "--family=gru",
                          "-k", "vocabulary_source_raises or vocabulary_target_raises", f"--xfails-file={xfails}")
    assert run.outcome.ret == 0 and run.contracts("failed") == set()
    run.outcome.stdout.fnmatch_lines(["*--xfails-file id test_errors.py marks 8 tests of 2 implementation(s) and 2 contract(s) as "
                                      "known failures (out_of_vocabulary_source_raises, out_of_vocabulary_target_raises): "
                                      "list each known failure by its contract and implementation"])
    assert "id test_errors.py::test_out_of_vocabulary_target_raises[torch- marks" not in run.output, "one contract of one implementation"


def test_an_xfails_file_with_a_byte_order_mark_is_read_as_written(pytester):
    xfails = pytester.path / "xfails.txt"
    xfails.write_bytes("\ufefftest_errors.py::test_out_of_vocabulary_source_raises\n".encode())  # as Notepad saves it
    run = run_conformance(pytester, "tests.broken.torch_models:gru_clamps_out_of_vocabulary", "--family=gru",
                          "-k", "source_raises", f"--xfails-file={xfails}")
    assert run.outcome.ret == 0 and run.contracts("xfailed") == {"out_of_vocabulary_source_raises"}
    assert "matches no test" not in run.output


@pytest.mark.parametrize("content, line", [
    (b"\x94\xa3test_errors.py\n", "not a text file: byte 0x94 at offset 0 is not UTF-8"),
    (b"test_errors.py\n\x00\x01\x02", "not a text file: control character '\\x00' at offset 15"),
], ids=["not-utf8", "nul-bytes"])
def test_an_xfails_file_that_is_not_text_is_a_usage_error(pytester, content, line):
    xfails = pytester.path / "xfails.bin"
    xfails.write_bytes(content)
    assert usage_error(pytester, "--impl=torch", f"--xfails-file={xfails}") == f"ERROR: --xfails-file={xfails}: {line}"
