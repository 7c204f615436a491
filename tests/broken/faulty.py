"""Factories that fail the way users' code fails, whatever the framework: the harness must answer each
with one clear line. Per-backend faults (NaN or time-major logits, a raising model, a declined
family) are in each `<backend>_models.py`."""
import os
import signal
import time

import torch

from conformance import Declared, Unsupported
from conformance.bridges.torch_bridge import TorchAdapter
from conformance.sources import kind_of
from impls import speech_encoder_lengths
from impls.torch import make_model
from impls.torch.recurrent import Seq2SeqDecoder
from tests.broken.torch_models import broken


def factory_raises(spec):
    raise ValueError("checkpoint weights.safetensors not found")


def returns_a_string(spec):
    return "not a model"


def returns_its_weights(spec):
    return make_model(spec).state_dict()  # an OrderedDict: the weights, not the model


class IntegerDecoder(Seq2SeqDecoder):
    def forward(self, X, state):
        logits, state = super().forward(X, state)
        return logits.argmax(-1, keepdim=True).expand_as(logits), state


def integer_logits(spec):
    return broken(spec, Seq2SeqDecoder=IntegerDecoder)


class ForgetsItsState(Seq2SeqDecoder):
    def forward(self, X, state):
        return super().forward(X, state)[0], None  # a `return logits, None` left over from a refactoring


def returns_no_state(spec):
    return broken(spec, Seq2SeqDecoder=ForgetsItsState)


def hangs_while(condition):
    """A factory whose decoder hangs whenever `condition(decoder, X)` holds, and works otherwise."""

    class HangsSometimes(Seq2SeqDecoder):
        def forward(self, X, state):
            while condition(self, X):
                time.sleep(0.05)
            return super().forward(X, state)

    return lambda spec: broken(spec, Seq2SeqDecoder=HangsSometimes)


hangs_in_decoder = hangs_while(lambda decoder, X: True)
# Passes the smoke test (a batch of two), so the hang happens inside a contract.
hangs_on_batch_of_one = hangs_while(lambda decoder, X: X.shape[0] == 1)
# Passes in float64, the suite's first choice; hangs when a contract builds it in float32.
hangs_in_float32 = hangs_while(lambda decoder, X: next(decoder.parameters()).dtype == torch.float32)


class SegfaultingDecoder(Seq2SeqDecoder):
    def forward(self, X, state):
        os.kill(os.getpid(), signal.SIGSEGV)


def segfaults_in_decoder(spec):
    return broken(spec, Seq2SeqDecoder=SegfaultingDecoder)


def hangs_in_factory(spec):
    while True:
        time.sleep(0.05)


class MyAdapter:
    """A user's own adapter implementing the documented protocol by composition; on the cpu, whatever
    spec.device says (the suite then declines it on any other device)."""

    def __init__(self, spec):
        inner = TorchAdapter(make_model(spec), spec.replace(device="cpu"))
        self.backend, self.framework_version, self.device, self.dtype = "custom", "1.0", "cpu", spec.dtype
        for name in ("encode", "init_state", "decode", "forward", "to_numpy", "from_numpy", "gradients", "get_weights", "set_weights"):
            setattr(self, name, getattr(inner, name))


def own_adapter(spec):
    return MyAdapter(spec)


# --- Sources that are not token ids ---------------------------------------------------------------


def built_for_80_features(spec):
    """A speech model built for 80 log-mel features whatever spec.num_features says: unusable, and the
    error line says what source it was given."""
    return Declared(make_model(spec.replace(num_features=80)), encoder_lengths=speech_encoder_lengths)


def token_ids_only(spec):
    """A translation model that says it reads token ids only: frames and images are declined, so skipped."""
    if kind_of(spec.family) != "tokens":
        raise Unsupported(f"this model reads token ids, not {kind_of(spec.family)}")
    return make_model(spec)
