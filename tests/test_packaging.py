"""The wheel, as a user gets it: built from this tree and installed into a fresh virtual environment
outside the repository with torch alone beside it, it validates a model from a scratch directory."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # nothing of this checkout
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


def test_wheel_in_a_fresh_environment_validates_a_model_from_a_scratch_directory(tmp_path):
    built = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp_path / "dist", REPO)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("seq2seq_conformance-*.whl")
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    # --no-compile: pip's byte-compiling of torch (12 s of the install's 23, measured) is not under test.
    installed = run(venv / "bin" / "pip", "install", "--quiet", "--no-compile", "torch==2.13.0", wheel)
    assert installed.returncode == 0, installed.stderr
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shutil.copy(REPO / "examples" / "torch_nn_transformer.py", scratch / "mymodels.py")

    where = run(venv / "bin" / "python", "-c", "import conformance, conformance_impls; print(conformance.__file__); "
                "import importlib.util; print(importlib.util.find_spec('impls'))", cwd=scratch)
    assert str(venv) in where.stdout.splitlines()[0] and where.stdout.splitlines()[1] == "None", where.stdout + where.stderr

    checked = run(venv / "bin" / "pytest", "--pyargs", "conformance", "--impl=mymodels:make_model,torch",
                  "--family=transformer", "-p", "no:cacheprovider", "-q", "--conformance-report=report", cwd=scratch)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
    report = json.loads((scratch / "report.json").read_text())
    outcomes = {(m["impl"], m["area"], m["outcome"]) for m in report["matrix"]}
    # The example does not load canonical weights, so only torch is compared with the specification
    # (the NumPy one and the golden vectors, both shipped in the wheel).
    # And a token id has no feature or channel count: wrong_source_size_raises (errors) does not apply.
    not_applicable = {(impl, "errors", "skipped") for impl in ("mymodels:make_model", "torch")}
    assert {o for o in outcomes if o[2] != "passed"} == {("mymodels:make_model", "cross_framework", "skipped")} | not_applicable
    assert {m["contract"] for m in report["matrix"] if m["area"] == "errors" and m["outcome"] == "skipped"} == {"wrong_source_size_raises"}
    assert ("torch", "cross_framework", "passed") in outcomes
    assert len(report["matrix"]) == 2 * 29  # every contract, for both implementations
    assert [i["target"] for i in report["implementations"]] == ["mymodels:make_model", "conformance_impls.torch:factory"]
    assert (scratch / "report.html").exists(), "the HTML template ships in the wheel"

    # The decode-speed gate ships too, as conformance_benchmarks (asv, in the [bench] extra, is not
    # needed to read its options): a user's CI runs it from the wheel (docs/ci.md).
    gate = run(venv / "bin" / "python", "-m", "conformance_benchmarks.compare", "--help", cwd=scratch)
    assert gate.returncode == 0 and "--impl" in gate.stdout, gate.stdout + gate.stderr
