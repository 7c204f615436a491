"""PyTorch reference Encoder-Decoders (d2l interface); `make_model(spec)` builds one family."""
from .decoding import encode, greedy_decode, recompute_greedy_decode, stepwise_greedy_decode
from .factory import make_model

__all__ = ["make_model", "encode", "greedy_decode", "recompute_greedy_decode", "stepwise_greedy_decode"]
