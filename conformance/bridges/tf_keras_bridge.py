"""TensorFlow / Keras 2 (`tf_keras`, what `tf.keras` means under TF_USE_LEGACY_KERAS=1): d2l's TensorFlow
code is Keras 2 code. Its models run through the Keras 3 adapter, given the tf_keras module."""
from __future__ import annotations

import random

import numpy as np
import tf_keras
from tf_keras.src import backend as tf_keras_backend

from . import tensorflow_bridge


def accepts(obj) -> bool:
    return tensorflow_bridge.accepts(obj, tf_keras)


def seed(n: int) -> None:
    """tf_keras.utils.set_random_seed(n), with TensorFlow's global seed set without emptying its kernel
    cache where that changes nothing (tensorflow_bridge.set_global_seed)."""
    random.seed(n)
    np.random.seed(n)
    tensorflow_bridge.set_global_seed(n)
    tf_keras_backend._SEED_GENERATOR.generator = random.Random(n)


def wrap(model, spec):
    return tensorflow_bridge.TensorFlowAdapter(model, spec, tf_keras)


limit_threads = tensorflow_bridge.limit_threads  # one TensorFlow runtime under both Keras versions
device_scope, place, synchronize = (tensorflow_bridge.device_scope, tensorflow_bridge.place,
                                    tensorflow_bridge.synchronize)
