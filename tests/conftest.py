import importlib.util
import os

from conformance.compat import import_mxnet

# Frameworks are imported once, before pytester's in-process runs snapshot sys.modules:
# re-importing one inside a run (torch, TensorFlow) fails.
if importlib.util.find_spec("torch"):
    import torch  # noqa: F401
if importlib.util.find_spec("tensorflow"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notices
    import keras  # noqa: F401
    import tensorflow  # noqa: F401
if importlib.util.find_spec("tf_keras"):
    import tf_keras  # noqa: F401
if importlib.util.find_spec("mxnet"):
    import_mxnet()

pytest_plugins = ["pytester"]
