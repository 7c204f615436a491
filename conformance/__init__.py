"""Conformance suite for d2l-style Encoder-Decoder models: `pytest --pyargs conformance --impl=...`."""
from .protocol import Seq2SeqAdapter
from .spec import FAMILIES, Declared, ModelSpec, Unsupported
from .trees import register_state_codec

__all__ = ["FAMILIES", "Declared", "ModelSpec", "Seq2SeqAdapter", "Unsupported", "register_state_codec"]
