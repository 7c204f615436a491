"""Factories that fail the way users' code fails, whatever the framework: the harness must answer each
with one clear line. Per-backend faults (NaN or time-major logits, a raising model, a declined
family) are in each `<backend>_models.py`."""
import ctypes
import os
import signal
import sys
import time

import torch

from conformance import Declared, Unsupported
from conformance.bridges.torch_bridge import TorchAdapter
from conformance.sources import kind_of
from impls import speech_encoder_lengths
from impls.torch import factory as canonical_factory, make_model
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


# --- Models that end or block the process running them (issue 18) ------------------------------


def decoder_that(act):
    """A factory whose decoder.forward calls `act()` on a batch of one (the smoke test decodes a batch
    of two, so `act` runs inside a contract) and works otherwise."""

    class Acts(Seq2SeqDecoder):
        def forward(self, X, state):
            if X.shape[0] == 1:
                act()
            return super().forward(X, state)

    return lambda spec: broken(spec, Seq2SeqDecoder=Acts)


exits_0_in_decoder = decoder_that(lambda: os._exit(0))  # exit status 0, no teardown, no report
exits_1_in_decoder = decoder_that(lambda: os._exit(1))
sigkills_in_decoder = decoder_that(lambda: os.kill(os.getpid(), signal.SIGKILL))  # as the OOM killer does
sys_exit_in_decoder = decoder_that(lambda: sys.exit(0))


class ModelsOwnBaseException(BaseException):
    """Not an Exception: `except Exception` in a harness lets it through."""


def _raise_base_exception():
    raise ModelsOwnBaseException("the decoder gave up")


base_exception_in_decoder = decoder_that(_raise_base_exception)


class ExitsOnFirstTry(Seq2SeqDecoder):
    def forward(self, X, state):
        sys.exit(0)


def sys_exit_on_first_try(spec):
    """sys.exit(0) in the suite's first try of the model (its smoke test, before any contract)."""
    return broken(spec, Seq2SeqDecoder=ExitsOnFirstTry)


def _lock_twice(dll):
    """A default pthread mutex locked twice by one thread: blocks for ever, inside C. Through
    ctypes.CDLL the GIL is released while it blocks; through ctypes.PyDLL it is held."""
    mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER; pthread_mutex_t is 40 bytes on glibc
    lock = dll(None).pthread_mutex_lock
    lock(mutex)
    lock(mutex)


deadlocks_in_c = decoder_that(lambda: _lock_twice(ctypes.CDLL))
deadlocks_in_c_holding_the_gil = decoder_that(lambda: _lock_twice(ctypes.PyDLL))


# --- Text a model controls, on its way to the terminal and the reports ---------------------------

# HTML, a Markdown table row and heading, and terminal controls: clear screen, an OSC-8 hyperlink,
# a bell, backspaces over the text before them.
HOSTILE_TEXT = ("<img src=x onerror=alert(1)>\n| a | b |\n# Heading\x1b[2J\x1b[H "
                "\x1b]8;;https://example.invalid/\x1b\\click\x1b]8;;\x1b\\ \x07\x08\x08\x08\x08passed")
LONG_TEXT = HOSTILE_TEXT + " " + "x" * 100_000  # 100 KB


def declines_with_hostile_text(spec):
    """Declines the Transformer with a reason of 100 KB full of markup and terminal controls."""
    if spec.family == "transformer":
        raise Unsupported(LONG_TEXT)
    return make_model(spec)


def _raise_hostile_text():
    raise ValueError(LONG_TEXT)


raises_hostile_text = decoder_that(_raise_hostile_text)


# --- Factories that damage the suite's files ------------------------------------------------------


def overwrites_its_canonical_weights(spec):
    """Loads the canonical weights, then saves a float16 copy over the file it was handed (a
    conversion step writing in place): the next implementation built from that file gets other weights."""
    declared = canonical_factory(spec)
    if spec.weights:
        from safetensors.numpy import load_file, save_file

        save_file({name: value.astype("float16") for name, value in load_file(spec.weights).items()}, spec.weights)
    return declared


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
