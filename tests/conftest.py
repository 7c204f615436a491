import importlib.util
import os

import pytest

from conformance.compat import import_mxnet
from conformance.plugin import GPU_ENVIRONMENT, MODEL_ENVIRONMENT
from tests.conformance_run import REPO

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
if importlib.util.find_spec("transformers"):
    # transformers imports its models lazily, on first use: a model first used inside a run is gone
    # (with the lazy loader's record of it) when pytester restores sys.modules.
    from transformers import MarianConfig, MarianMTModel  # noqa: F401
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache  # noqa: F401

pytest_plugins = ["pytester"]


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
