"""The golden vectors are what the specification computes: a change of impls/numpy shows as drift,
named by family and size (`python -m conformance.golden --check`)."""
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conformance import golden
from conformance.spec import FAMILIES
from conformance.tolerances import AGREE


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
    assert golden.main(["--check"]) == 1
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    drift = {family: float(line.removeprefix("max relative drift ")) for family, line in lines.items()}
    # Unmoved families drift only by the summation order of this machine's BLAS threads.
    assert drift["lstm"] == pytest.approx(1e-8, rel=0.01) and drift["gru"] <= AGREE["float64"], lines
