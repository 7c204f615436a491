"""A user's way in: the factory module beside them is found, and every failure's reproduce line reruns
that contract as printed, from where the suite ran, with the same numbers."""
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest

from conformance.plugin import reproduce_line
from tests.conformance_run import run_conformance

BROKEN = "tests.broken.torch_models:transformer_top_left_mask"


def test_printed_reproduce_command_reruns_the_contract_with_the_same_numbers(pytester, monkeypatch):
    run = run_conformance(pytester, BROKEN, "--family=transformer", "-k", "stepwise and B3")
    (verdict,) = run.messages()
    command = re.search(r"reproduce: (.*)", run.output).group(1)
    words = shlex.split(command)
    while re.fullmatch(r"[A-Z_]+=.*", words[0]):  # the environment that decides the model, if any is set
        monkeypatch.setenv(*words.pop(0).split("=", 1))
    again = pytester.runpytest(*words[1:], "-p", "no:cacheprovider")
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


def test_reproduce_line_carries_the_environment_that_decides_the_model(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0 but quoted")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    line = reproduce_line("conformance/test_shapes.py::test_logits_shape[m:f-gru]", "m:f", 0)
    assert line.startswith("KERAS_BACKEND=tensorflow TF_ENABLE_ONEDNN_OPTS='0 but quoted' pytest "), line
    assert "CUDA_VISIBLE_DEVICES" not in line and "PYTHONPATH" not in line, "the GPU's only on a GPU; paths name a machine"
    on_gpu = reproduce_line("conformance/test_shapes.py::test_logits_shape[m:f-gru]", "m:f", 0, device="cuda:0")
    assert "CUDA_VISIBLE_DEVICES=1 pytest " in on_gpu and on_gpu.endswith("--device=cuda:0")


LEGACY_KERAS_FACTORY = """
import tensorflow as tf
from tests.broken.keras2_models import gru_encoder_reads_padding

def make_model(spec):
    if not tf.keras.__name__.startswith("tf_keras"):
        raise RuntimeError(f"tf.keras is {tf.keras.__name__}: d2l's TensorFlow code needs Keras 2 (TF_USE_LEGACY_KERAS=1)")
    return gru_encoder_reads_padding(spec)
"""


@pytest.mark.skipif(importlib.util.find_spec("tf_keras") is None, reason="tf_keras is not installed")
def test_a_keras2_model_chosen_by_the_environment_reproduces_as_printed(pytester, monkeypatch, repo_on_pythonpath):
    """d2l's TensorFlow code uses tf.keras, which is Keras 2 only under TF_USE_LEGACY_KERAS=1: the printed
    line carries it, and gives the same verdict in a shell where it is not set."""
    pytester.makepyfile(legacy=LEGACY_KERAS_FACTORY)
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    run = pytester.runpytest_subprocess("--pyargs", "conformance", "--impl=legacy:make_model", "--family=gru",
                                        "-k", "extra_padding and B3", "-p", "no:cacheprovider")
    assert run.ret == 1, run.stdout.str()
    command = re.search(r"reproduce: (.*)", run.stdout.str()).group(1)
    assert command.startswith("TF_USE_LEGACY_KERAS=1 pytest "), command
    monkeypatch.delenv("TF_USE_LEGACY_KERAS")
    shell = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    again = subprocess.run(command + " -p no:cacheprovider", shell=True, cwd=pytester.path, env=shell, capture_output=True, text=True)
    verdict = re.search(r"^\[extra_padding_changes_nothing\] .*$", run.stdout.str(), re.M).group(0)
    assert again.returncode == 1 and verdict in again.stdout, "the same verdict, the same numbers: " + again.stdout
