"""Factories that fail the way users' code fails: the harness must answer each with one clear line."""
import time

import torch

from conformance import Unsupported
from conformance.bridges.torch_bridge import TorchAdapter
from impls.torch import make_model
from impls.torch.recurrent import Seq2SeqDecoder
from tests.broken.torch_models import broken


def factory_raises(spec):
    raise ValueError("checkpoint weights.safetensors not found")


def returns_a_string(spec):
    return "not a model"


def declines_transformer(spec):
    if spec.family == "transformer":
        raise Unsupported("this port has no Transformer yet")
    return make_model(spec)


class NaNDecoder(Seq2SeqDecoder):
    def forward(self, X, state):
        logits, state = super().forward(X, state)
        return logits * torch.nan, state


def nan_logits(spec):
    return broken(spec, Seq2SeqDecoder=NaNDecoder)


class TimeMajorDecoder(Seq2SeqDecoder):
    def forward(self, X, state):
        logits, state = super().forward(X, state)
        return logits.transpose(0, 1), state


def time_major_logits(spec):
    return broken(spec, Seq2SeqDecoder=TimeMajorDecoder)


class IntegerDecoder(Seq2SeqDecoder):
    def forward(self, X, state):
        logits, state = super().forward(X, state)
        return logits.argmax(-1, keepdim=True).expand_as(logits), state


def integer_logits(spec):
    return broken(spec, Seq2SeqDecoder=IntegerDecoder)


class HangingDecoder(Seq2SeqDecoder):
    def forward(self, X, state):
        while True:
            time.sleep(0.05)


def hangs_in_decoder(spec):
    return broken(spec, Seq2SeqDecoder=HangingDecoder)


def hangs_in_factory(spec):
    while True:
        time.sleep(0.05)


class MyAdapter:
    """A user's own adapter implementing the documented protocol by composition."""

    def __init__(self, spec):
        inner = TorchAdapter(make_model(spec), spec)
        self.backend, self.framework_version, self.device, self.dtype = "custom", "1.0", "cpu", spec.dtype
        for name in ("encode", "init_state", "decode", "forward", "to_numpy", "from_numpy", "gradients", "get_weights", "set_weights"):
            setattr(self, name, getattr(inner, name))


def own_adapter(spec):
    return MyAdapter(spec)
