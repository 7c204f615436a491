import contextlib
import importlib
import importlib.util
import os
import pkgutil

import pytest

from conformance import bridges
from conformance.compat import import_mxnet
from conformance.plugin import GPU_ENVIRONMENT, MODEL_ENVIRONMENT
from tests.conformance_run import FRAMEWORKS, REPO

# One intra-op thread per framework, as the runs ask: asked before the imports, since MXNet fixes its
# operators' threads when it loads (from the environment: CI machines set OMP_NUM_THREADS=2).
bridges.limit_threads(1)
# Frameworks are imported once, before pytester's in-process runs snapshot sys.modules:
# re-importing one inside a run (torch, TensorFlow) fails.
if importlib.util.find_spec("torch"):
    import torch  # noqa: F401
    # torch.compile's modules register cache artifacts once per process: first imported inside a run,
    # they are dropped with it and fail to register again in the next.
    import torch._dynamo.package, torch._dynamo.pgo, torch._functorch._aot_autograd.autograd_cache  # noqa: E401, F401
    import torch._inductor.codecache, torch._inductor.runtime.autotune_cache  # noqa: E401, F401
if importlib.util.find_spec("tensorflow"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notices
    import keras  # noqa: F401
    import tensorflow  # noqa: F401
if importlib.util.find_spec("tf_keras"):
    import tf_keras  # noqa: F401
if importlib.util.find_spec("mxnet"):
    import_mxnet()
if importlib.util.find_spec("onnxruntime"):
    import onnxruntime  # noqa: F401
# And for the frameworks just imported, from the start: TensorFlow fixes its thread pools when it runs
# its first op, which an import or an earlier test may do before any run asks, and then each worker's
# second thread only spins on a 2-core machine.
bridges.limit_threads(1)
if importlib.util.find_spec("transformers"):
    # transformers imports its models lazily, on first use: a model first used inside a run is gone
    # (with the lazy loader's record of it) when pytester restores sys.modules.
    from transformers import MarianConfig, MarianMTModel  # noqa: F401
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache  # noqa: F401


def import_what_runs_import():
    """Import, once, the modules every in-process run would import again: pytester drops what a run
    imported when the run ends. Measured per run of one torch broken model: 2.3 s -> 0.9 s, mostly
    Hypothesis: imported anew, its first test registers its generator again, which gc.collect()s the
    whole heap (0.6 s with the frameworks loaded). Modules of a framework that is not installed fail to
    import and stay out."""
    import hypothesis.extra.numpy  # noqa: F401
    models = [f"tests.{kind}.{name}_models" for kind in ("broken", "tricky") for name in (*FRAMEWORKS, "keras3")]
    for name in ["conformance", "conformance_impls", "impls", "tests.broken.common", *models]:
        for module in (name, *walk_package(name)):
            with contextlib.suppress(ImportError):
                importlib.import_module(module)


def walk_package(name: str):
    """Every module of a package, but the shipped contracts (conformance/test_*.py: a run imports them
    under its own assertion rewriting)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return
    for info in pkgutil.walk_packages(spec.submodule_search_locations, f"{name}.", onerror=lambda _: None):
        if not info.name.rpartition(".")[2].startswith("test_"):
            yield info.name


pytest_plugins = ["pytester"]


def pytest_configure(config):
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        import_what_runs_import()  # where tests run: not in pytest -n's controller (2 s of CPU there)


@pytest.fixture
def repo_on_pythonpath(monkeypatch):
    """A pytest subprocess imports tests.broken from this checkout, installed or not."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


@pytest.fixture(autouse=True)
def known_model_environment(monkeypatch):
    """The suite's own tests run without the variables that reproduce lines carry (CI machines set
    OMP_NUM_THREADS): a test that needs one sets it."""
    for name in [*MODEL_ENVIRONMENT, *GPU_ENVIRONMENT]:
        monkeypatch.delenv(name, raising=False)
