"""The golden vectors are what the specification computes: a change of impls/numpy shows as drift,
named by family and size (`python -m conformance.golden --check`); a changed golden file shows as
damaged, by name, and is never blamed on the implementation built from it."""
import re
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conformance import golden
from conformance.spec import FAMILIES
from conformance.tolerances import AGREE
from tests.conformance_run import run_conformance


@pytest.mark.parametrize("family", FAMILIES)
def test_specification_reproduces_its_golden_vectors(family):
    drift = golden.drift(family)
    assert drift <= AGREE["float64"], (
        f"{family}: the specification's logits moved {drift:.2e} from conformance/golden/ (> {AGREE['float64']:.0e}); "
        "if the change is meant, regenerate with `python -m conformance.golden` and say why in the commit")


def test_a_moved_specification_is_reported_by_family_and_size(tmp_path, monkeypatch, capsys):
    shutil.copytree(golden.DIR, tmp_path / "golden")
    monkeypatch.setattr(golden, "DIR", tmp_path / "golden")
    vectors = load_file(str(golden.vectors_path("lstm")))
    vectors["logits"] = vectors["logits"] + 1e-8 * max(1.0, np.abs(vectors["logits"]).max())  # as if the spec had moved
    save_file(vectors, str(golden.vectors_path("lstm")))
    golden.write_checksums()  # as the regeneration would have: the files are whole, the spec has moved
    assert golden.main(["--check"]) == 1
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    drift = {family: float(line.removeprefix("max relative drift ")) for family, line in lines.items()}
    # Unmoved families drift only by the summation order of this machine's BLAS threads.
    assert drift["lstm"] == pytest.approx(1e-8, rel=0.01) and drift["gru"] <= AGREE["float64"], lines


@pytest.fixture
def golden_copy(tmp_path, monkeypatch):
    """conformance/golden/ copied where a test may damage it, and used in its place."""
    shutil.copytree(golden.DIR, tmp_path / "golden")
    monkeypatch.setattr(golden, "DIR", tmp_path / "golden")
    return tmp_path / "golden"


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # a float32's lowest mantissa bit: the file still parses, a weight moves by 1e-7
    path.write_bytes(bytes(data))


def cut_in_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, file", [(flip_last_byte, "gru.weights.safetensors"), (cut_in_half, "gru.weights.safetensors"),
                                          (flip_last_byte, "gru.vectors.safetensors"), (cut_in_half, "gru.vectors.safetensors")],
                         ids=["weights-one-bit", "weights-cut", "vectors-one-bit", "vectors-cut"])
def test_a_damaged_golden_file_is_named_and_not_blamed_on_the_model(pytester, golden_copy, damage, file):
    """Before: a changed weight failed torch's golden_vectors as a numeric mismatch, a truncated
    weights file blamed the factory ("raised SafetensorError"), a truncated vectors file showed a
    traceback ending in `request = <SubRequest 'golden_pair'...>`."""
    damage(golden_copy / file)
    run = run_conformance(pytester, "torch", "--family=gru,lstm", "-k", "golden")
    assert run.outcome.ret == 1
    assert len(run.messages()) == 1, run.messages()
    message = run.messages()[0]
    assert message.startswith(f"[golden_vectors] {golden_copy / file} is not the committed file: its SHA-256 is "), message
    assert "regenerate every golden file with `python -m conformance.golden`" in message
    assert "factory" not in message and "SubRequest" not in run.output and "Traceback" not in run.output
    assert run.verdicts()["test_cross_framework.py::test_golden_vectors[torch-lstm]"] == "passed", "the other files are used"


def test_golden_check_names_a_damaged_file(golden_copy, capsys):
    flip_last_byte(golden_copy / "rnn.vectors.safetensors")
    assert golden.main(["--check"]) == 1
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["rnn"].startswith(f"{golden_copy / 'rnn.vectors.safetensors'} is not the committed file"), lines["rnn"]
    assert float(lines["gru"].removeprefix("max relative drift ")) <= AGREE["float64"], lines


def test_a_factory_that_writes_to_its_canonical_weights_is_named_and_the_file_restored(pytester):
    """A factory that saves a float16 copy over the canonical weights file it was handed. Before, its
    contracts failed as a numeric mismatch (2.5e-4 against a reference built from the changed file),
    the cause unnamed, and the implementations built after it read the changed weights. Now its
    cross-framework contracts fail naming it and the file, and the file is written again."""
    impl = "tests.broken.faulty:overwrites_its_canonical_weights"
    run = run_conformance(pytester, f"{impl},torch", "--family=gru", "-k", "logits_match_reference")
    assert run.outcome.ret == 1
    assert set(run.verdicts("torch").values()) == {"passed"}, "the reference and torch read the file as the suite wrote it"
    assert set(run.verdicts(impl).values()) == {"error"}, "its contracts cannot be run: an error of the set-up"
    [message] = set(run.messages())
    assert re.fullmatch(rf"\[logits_match_reference\] {impl}'s factory changed the canonical weights file it was handed "
                        r"\(\S+/gru-seed0\.safetensors: its SHA-256 differs after the build\); a factory must only read spec\.weights",
                        message), message
