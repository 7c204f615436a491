"""MXNet (Gluon, numpy interface) reference Encoder-Decoders (d2l interface); `make_model(spec)` builds one family."""
from .decoding import encode, greedy_decode, recompute_greedy_decode, stepwise_greedy_decode
from .factory import factory, make_model

__all__ = ["encode", "greedy_decode", "factory", "make_model", "recompute_greedy_decode", "stepwise_greedy_decode"]
