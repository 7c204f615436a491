"""The worked examples get the verdicts written beside them (each module's FAMILY and EXPECTED)."""
import importlib
import importlib.util
import pathlib

import pytest

from tests.conformance_run import (
    all_contracts, assert_cross_framework_skipped_as_undeclared, cross_framework_contracts, not_applicable, run_conformance)

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
# example: what it needs beyond torch
NEEDS = {"gluon_d2l_gru": ("mxnet",), "keras2_d2l": ("tf_keras",), "hf_marian_onnx": ("transformers", "onnxruntime", "onnx"),
         "hf_speech2text": ("transformers",), "hf_whisper": ("transformers",), "hf_vision_encoder_decoder": ("transformers",)}


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
    assert run.contracts("passed") == (all_contracts() - failures - cross_framework_contracts() - declined(run)
                                       - not_applicable(family))
    if not hasattr(importlib.import_module(f"examples.{example}"), "SOURCE"):
        assert_cross_framework_skipped_as_undeclared(run, f"examples.{example}:{factory}")
    assert run.outcome.ret == (1 if failures else 0)


DECLINED = ("no gradients", "Declared(fixed_src_steps=")  # an exported graph; a model of one source width (Whisper)


def declined(run) -> set[str]:
    """The contracts a model's own declaration rules out, skipped with that reason: the gradient ones
    for a model with no gradients, those that need other source widths for a model of one width."""
    return {r["contract"] for r in run.report["results"]
            if r["outcome"] == "skipped" and any(reason in r["message"] for reason in DECLINED)}


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


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
def test_speech2text_reads_zero_padding_and_masked_subsampling_does_not():
    """examples/hf_speech2text.py's claim, measured: zero padding, as its feature extractor pads a
    batch, changes an utterance's encoder outputs (15% for 13 frames and 8 zero frames); masking the
    padded frames before each convolution leaves them as they were."""
    import torch

    from conformance import ModelSpec
    from examples import hf_speech2text

    spec = ModelSpec("speech")
    torch.manual_seed(1)
    frames, lengths = torch.randn(1, 13, spec.num_features, dtype=torch.float64), torch.tensor([13])
    padded = torch.cat([frames, torch.zeros(1, 8, spec.num_features, dtype=torch.float64)], 1)
    for factory, (low, high) in {"make_model": (0.1, 1.0), "masked_subsampling": (0.0, 1e-13)}.items():
        encoder = getattr(hf_speech2text, factory)(spec).model.encoder
        with torch.no_grad():
            alone, in_batch = encoder(frames, lengths), encoder(padded, lengths)[:, :4]
        change = ((in_batch - alone).abs().max() / alone.abs().max()).item()
        assert low <= change <= high, f"{factory}: 8 zero frames changed the encoder outputs by {change:.2e} (relative), expected [{low}, {high}]"


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
def test_vit_eager_attention_rounds_like_float32_in_a_float64_model():
    """examples/hf_vision_encoder_decoder.py's cause of float32 tolerances: ViT's eager attention (its
    softmax in float32) and SDPA differ in float64 by float32 rounding (2.1e-7), not by float64's."""
    import copy

    import torch

    from conformance import ModelSpec
    from examples import hf_vision_encoder_decoder

    spec = ModelSpec("captioning")
    vit = hf_vision_encoder_decoder.vision_encoder_decoder("float64", spec.channels, spec.height, spec.tgt_vocab, spec.max_len).encoder
    sdpa = copy.deepcopy(vit)
    sdpa.config._attn_implementation = "sdpa"
    images = torch.randn(2, spec.channels, spec.height, spec.width, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (vit(pixel_values=images).last_hidden_state - sdpa(pixel_values=images).last_hidden_state).abs().max().item()
    assert 1e-9 < difference < 1e-5, f"eager vs sdpa ViT in float64: {difference:.2e}, expected float32 rounding (1e-9, 1e-5)"
