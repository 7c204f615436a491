"""PyTorch reference Encoder-Decoders (d2l interface); `make_model(spec)` builds one family;
`factory` is make_model declaring canonical weights when it loads them (conformance.spec)."""
from .decoding import encode, greedy_decode, recompute_greedy_decode, stepwise_greedy_decode
from .factory import factory, make_model

__all__ = ["make_model", "factory", "encode", "greedy_decode", "recompute_greedy_decode", "stepwise_greedy_decode"]
