"""ONNX Runtime: the PyTorch references exported to ONNX (encoder, init_state, decoder step with the
state as named inputs and outputs) and run by the CPU execution provider; `make_model(spec)` builds
one family, `factory` declares canonical weights when it loads them."""
from .decoding import encode, greedy_decode, recompute_greedy_decode
from .factory import factory, make_model

__all__ = ["make_model", "factory", "encode", "greedy_decode", "recompute_greedy_decode"]
