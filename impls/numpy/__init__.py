"""The executable specification of the canonical weights (docs/weights.md): every reference family in
plain NumPy, to be read beside the d2l chapters, and an implementation like the others (`--impl=numpy`)."""
from .factory import factory, make_model
from .model import NumpySeq2Seq

__all__ = ["make_model", "factory", "NumpySeq2Seq"]
