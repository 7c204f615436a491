"""The model as contracts see it: every call checked, every failure one readable line.

`CheckedModel` wraps a `Seq2SeqAdapter`. An exception raised by the implementation becomes
`ModelRaised`, except `conformance.Unsupported`, which becomes `ModelDeclined` (the plugin skips
the contract with the model's reason); an output that breaks the interface (logits of the wrong
shape or type, non-finite values) becomes `BadOutput`. Contracts raise `ContractFailure`. The plugin prints
each of these as a single line naming the contract, so no traceback of the harness reaches
the user.
"""
from __future__ import annotations

import contextlib

import numpy as np
from _pytest.outcomes import OutcomeException

from .inputs import Batch, Vocabulary
from .protocol import Seq2SeqAdapter
from .sources import Source
from .spec import Unsupported
from .text import LIMIT, clean
from .trees import opaque_leaves


class ConformanceError(Exception):
    """Base of the failures the plugin reports as one line. `reason`: what went wrong, without the call it
    went wrong in (the same exception raised by several contracts is one finding: conformance/findings.py)."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


class ContractFailure(ConformanceError):
    """The implementation broke the contract under test. `compared`: the failure is a disagreement of two
    computations of the same thing, and `measured` how far apart they were (None: not a single number);
    calls that are not repeatable can fail such a comparison with no other bug (conformance/findings.py)."""

    def __init__(self, message: str, compared: bool = False, measured: float | None = None):
        super().__init__(message)
        self.compared = compared
        self.measured = measured


class CannotJudge(ContractFailure):
    """The contract cannot tell whether the model keeps it, because something it relies on does not hold
    (repeatable calls, right gradients). `cause` names that, as its finding does (conformance/findings.py)."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


class ModelRaised(ConformanceError):
    """The implementation raised where it should have returned."""


class ModelDeclined(ConformanceError):
    """The implementation raised `conformance.Unsupported` for a call it does not offer (gradients
    without autodiff, say): a contract that needs the call is skipped with the model's reason."""


class BadOutput(ConformanceError):
    """The implementation returned something the interface does not allow."""


class UnusableAsBefore(ConformanceError):
    """The model could not be built or used, as reported in full at its first contract."""


# Not a model's failure when raised inside its code: the user's Ctrl-C, and pytest's outcomes (the
# suite's own timeout, Hung, is one). Every other BaseException, SystemExit included, is the model's.
PASS_THROUGH = (KeyboardInterrupt, OutcomeException)


class Deadline:
    """The error of the innermost deadline (loading.deadline) that has fired and is still in force.
    Its one SIGALRM can be caught: under load Hypothesis caught a contract's Hung and ran the hanging
    model again, with no timer left. The harness raises it again before each call into the model."""

    fired: BaseException | None = None

    def raise_if_fired(self) -> None:
        if self.fired is not None:
            raise self.fired.with_traceback(None)


DEADLINE = Deadline()


class OpaqueState(ConformanceError):
    """A tree holds an object the suite cannot see into, so no contract on it can be checked."""


FLOAT64_UNAVAILABLE = "float64 unavailable"  # how a model's note begins where it runs in float32 instead


def one_line(exc: BaseException, limit: int = LIMIT) -> str:
    """'TypeName: message' on one line of printable text (Keras colours its errors; a model's
    message may hold any control sequence), cut to `limit` characters."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if lines and "Traceback (most recent call last)" in lines[0]:
        lines = lines[-1:]  # MXNet puts its C++ stack in the message; the reason is the last line
    return f"{clean(type(exc).__name__, 100)}: {clean(' '.join(lines), limit) or '(no message)'}"


def shape_of(a) -> str:
    return str(tuple(np.shape(a)))


class CheckedModel:
    def __init__(self, adapter: Seq2SeqAdapter, spec, impl_name: str, vocab: Vocabulary, source: Source, note: str = "",
                 canonical_weights: bool = False, weights_id: str | None = None,
                 tokens_per_call: int | None = None):
        self.adapter = adapter
        self.spec = spec
        self.impl_name = impl_name
        self.vocab = vocab  # the spec's vocabularies, or those the model declared
        self.source = source  # what the source is: kind, sizes, what the model declared of it
        self.note = note  # why this model runs in a dtype other than the one asked for, if it does
        self.precision = adapter.dtype  # whose tolerances apply: see conformance.precision
        self.canonical_weights = canonical_weights  # holds spec.weights, as its factory declared
        self.weights_id = weights_id  # or weights of its own, named so (an export and its source)
        self.tokens_per_call = tokens_per_call  # most tokens a decoder call on a decoded state takes (declared)
        # Calls that give other numbers when repeated: {"decode" | "forward" | "gradients": max relative
        # difference of two identical calls} (conformance/repeatability.py); and which of those calls the
        # contract now running made, so that a failure they explain says so (conformance/findings.py).
        self.randomness: dict[str, float] = {}
        self.used: set[str] = set()

    @property
    def dtype(self) -> str:
        return self.adapter.dtype

    @property
    def family(self) -> str:
        return self.spec.family

    @contextlib.contextmanager
    def calling(self, what: str):
        DEADLINE.raise_if_fired()  # a contract past its deadline calls the model no more
        try:
            yield
        except ConformanceError:
            raise
        except Unsupported as exc:
            raise ModelDeclined(f"{what} declined by the model: {clean(exc)}") from exc
        except PASS_THROUGH:
            raise
        except BaseException as exc:  # the implementation's own error, whatever its type: sys.exit() too
            raise ModelRaised(f"{what} raised {one_line(exc)}", f"raises {one_line(exc)}") from exc

    def _logits(self, logits, batch: int, steps: int, what: str) -> np.ndarray:
        expected = (batch, steps, self.vocab.tgt_size)
        if not isinstance(logits, np.ndarray) or not np.issubdtype(logits.dtype, np.floating):
            kind = getattr(logits, "dtype", type(logits).__name__)
            problem = f"returned logits of type {kind}, but should return a floating array"
            raise BadOutput(f"{what} {problem}", problem)
        if logits.shape != expected:
            problem = f"returned logits of shape {logits.shape}, but should be (batch, steps, tgt_vocab)={expected}"
            raise BadOutput(f"{what} {problem}", problem)
        bad = ~np.isfinite(logits)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise BadOutput(
                f"{what} returned {int(np.isnan(logits).sum())} NaN and {int(np.isinf(logits).sum())} infinite "
                f"logits of {logits.size}; first at (batch, step, token)={first}", "returns non-finite logits"
            )
        return logits

    # The d2l interface, one call each.
    def encode(self, src, src_valid_len):
        self.used.add("decode")
        with self.calling(f"encoder.forward(X of shape {shape_of(src)})"):
            return self.adapter.encode(self.source.as_input(src, self.dtype), src_valid_len)

    def init_state(self, enc_outputs, src_valid_len):
        what = "decoder.init_state(enc_outputs, valid_lens)"
        self.used.add("decode")
        with self.calling(what):
            return self._state(self.adapter.init_state(enc_outputs, src_valid_len), what)

    def decode(self, tgt, state):
        what = f"decoder.forward(X of shape {shape_of(tgt)}, state)"
        self.used.add("decode")
        with self.calling(what):
            logits, state = self.adapter.decode(tgt, state)
        return self._logits(logits, *np.shape(tgt), what), self._state(state, what)

    @staticmethod
    def _state(state, what: str):
        # None carries nothing of the source: the next call would fail on it, and be blamed.
        if state is None:
            problem = "returned None as the state, but should return the state for the next call"
            raise BadOutput(f"{what} {problem}", problem)
        return state

    def forward(self, batch: Batch) -> np.ndarray:
        what = f"EncoderDecoder.forward(enc_X {shape_of(batch.src)}, dec_X {shape_of(batch.tgt)}, valid_lens)"
        self.used.add("forward")
        with self.calling(what):
            logits = self.adapter.forward(self.source.as_input(batch.src, self.dtype), batch.tgt, batch.src_valid_len)
        return self._logits(logits, *batch.tgt.shape, what)

    def to_numpy(self, tree):
        with self.calling("to_numpy(tree)"):
            converted = self.adapter.to_numpy(tree)
        opaque = opaque_leaves(converted)
        if opaque:
            path, kind = opaque[0]
            raise OpaqueState(
                f"leaf {path} is a {kind}, which the suite cannot see into, so it cannot compare, snapshot or "
                f"reorder it: register a state codec for it (conformance.register_state_codec)",
                f"keeps a {kind} in its state, which the suite cannot see into without a state codec",
            )
        return converted

    def from_numpy(self, tree):
        with self.calling("from_numpy(tree)"):
            return self.adapter.from_numpy(tree)

    def gradients(self, batch: Batch, cotangent: np.ndarray):
        self.used.add("gradients")
        with self.calling("gradients of sum(logits * cotangent)"):
            try:
                return self.adapter.gradients(self.source.as_input(batch.src, self.dtype), batch.tgt, batch.src_valid_len,
                                              cotangent)
            except Exception:
                # Logits the interface does not allow (integers, say) explain the framework's error
                # ("does not require grad") better: a BadOutput from the forward pass wins.
                self.forward(batch)
                raise

    def get_weights(self):
        with self.calling("get_weights()"):
            return self.adapter.get_weights()

    def set_weights(self, weights):
        with self.calling("set_weights(weights)"):
            self.adapter.set_weights(weights)

    def get_buffers(self):
        if not callable(getattr(self.adapter, "get_buffers", None)):
            raise ModelDeclined("the adapter has no get_buffers(), so the arrays the model holds besides its trainable "
                                "parameters (BatchNorm running statistics) cannot be read")
        with self.calling("get_buffers()"):
            return self.adapter.get_buffers()

    # Compositions the contracts share.
    def initial_state(self, batch: Batch):
        return self.init_state(self.encode(batch.src, batch.src_valid_len), batch.src_valid_len)

    def teacher_forced(self, batch: Batch) -> np.ndarray:
        """All target steps in one decoder call, from a fresh state."""
        return self.decode(batch.tgt, self.initial_state(batch))[0]

    def chunked(self, batch: Batch, chunk: int) -> tuple[np.ndarray, object]:
        """The target fed `chunk` tokens per decoder call from a fresh state, each call continuing the
        returned state. A model that declares fewer tokens per call declines it (the contract is skipped)."""
        limit = self.tokens_per_call
        if limit is not None and chunk > limit and batch.tgt.shape[1] > chunk:
            raise ModelDeclined(f"decoding {chunk} tokens per call on a state that has decoded: the model declares "
                                f"at most {limit} (Declared(tokens_per_call={limit}))")
        state, pieces = self.initial_state(batch), []
        for start in range(0, batch.tgt.shape[1], chunk):
            logits, state = self.decode(batch.tgt[:, start : start + chunk], state)
            pieces.append(logits)
        return np.concatenate(pieces, axis=1), state

    def decode_on(self, tgt, state) -> tuple[np.ndarray, object]:
        """Decoding `tgt` on from a state that has decoded before: in one call, or in as many tokens per
        call as the model declares it takes (OpenNMT-py's cached decoder takes one)."""
        step = self.tokens_per_call or tgt.shape[1]
        pieces = []
        for start in range(0, tgt.shape[1], step):
            logits, state = self.decode(tgt[:, start : start + step], state)
            pieces.append(logits)
        return np.concatenate(pieces, axis=1), state

    def greedy(self, batch: Batch, steps: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Greedy decoding through the state from the start tokens batch.tgt[:, :1], one token per call:
        (the tokens, start included, (batch, 1 + steps); each step's logits (batch, tgt_vocab))."""
        tokens = batch.tgt[:, :1]
        state, logits_per_step = self.initial_state(batch), []
        for _ in range(steps):
            logits, state = self.decode(tokens[:, -1:], state)
            logits_per_step.append(logits[:, 0])
            tokens = np.concatenate([tokens, self.vocab.greedy(logits[:, 0])[:, None]], axis=1)
        return tokens, logits_per_step

    @contextlib.contextmanager
    def weights_restored(self):
        """Contracts that perturb weights leave the model as they found it."""
        saved = self.get_weights()
        try:
            yield saved
        finally:
            self.set_weights(saved)
