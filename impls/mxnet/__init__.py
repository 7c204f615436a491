"""MXNet (Gluon, numpy interface) reference Encoder-Decoders (d2l interface); `make_model(spec)` builds one family."""
from .factory import make_model

__all__ = ["make_model"]
