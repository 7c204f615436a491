"""TensorFlow (Keras 3) reference Encoder-Decoders (d2l interface); `make_model(spec)` builds one family."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notices, before it loads

from .decoding import encode, greedy_decode, recompute_greedy_decode, stepwise_greedy_decode
from .factory import factory, make_model

__all__ = ["make_model", "factory", "encode", "greedy_decode", "recompute_greedy_decode", "stepwise_greedy_decode"]
