"""Conformance suite for d2l-style Encoder-Decoder models: `pytest --pyargs conformance --impl=...`."""
from .protocol import Seq2SeqAdapter
from .spec import FAMILIES, ModelSpec, Unsupported

__all__ = ["FAMILIES", "ModelSpec", "Seq2SeqAdapter", "Unsupported"]
