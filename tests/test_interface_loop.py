"""The interface loop (conformance.decoding), the one the benchmarks time for any implementation, gives
the tokens of each reference's own fast loop (`impls.<backend>.greedy_decode`), through the bridge's
native path and through the numpy protocol a user's own adapter offers."""
import importlib

import numpy as np
import pytest

from conformance.decoding import InterfaceLoop, greedy_tokens, protocol_greedy_tokens
from conformance.harness import CheckedModel
from conformance.loading import build, resolve
from conformance.spec import FAMILIES, ModelSpec
from tests.conformance_run import BACKENDS, backend_param, ported
from tests.decoding_inputs import assert_same_greedy_tokens, source, torch_logit_gap


class NumpyOnly:
    """A user's own adapter: the numpy protocol of a real model and nothing more (no greedy_tokens)."""

    def __init__(self, adapter):
        self.inner = adapter
        self.backend, self.framework_version = adapter.backend, adapter.framework_version
        self.device, self.dtype = adapter.device, adapter.dtype

    def encode(self, src, src_valid_len):
        return self.inner.encode(src, src_valid_len)

    def init_state(self, enc_outputs, src_valid_len):
        return self.inner.init_state(enc_outputs, src_valid_len)

    def decode(self, tgt, state):
        return self.inner.decode(tgt, state)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", [backend_param(name, name) for name in BACKENDS])
def test_interface_loop_gives_the_native_loops_tokens(backend, family):
    if family not in ported(backend):
        pytest.skip(f"impls.{backend} has no {family} reference yet")
    checked = build(resolve(f"impls.{backend}:make_model"), ModelSpec(family))  # float64: no ties to flip
    assert isinstance(checked, CheckedModel), checked
    src, valid = source(batch=5, family=family)
    native = importlib.import_module(f"impls.{backend}").greedy_decode(checked.adapter.model, src, valid, bos=1, steps=12)
    assert native.shape == (5, 12)
    assert hasattr(checked.adapter, "greedy_tokens"), "our bridges keep native arrays between steps"
    tokens = greedy_tokens(checked, src, valid, bos=1, steps=12)
    assert tokens.dtype == np.int64
    np.testing.assert_array_equal(tokens, native, err_msg=f"{backend} {family}: bridge loop vs greedy_decode")
    np.testing.assert_array_equal(greedy_tokens(NumpyOnly(checked.adapter), src, valid, bos=1, steps=12), native,
                                  err_msg=f"{backend} {family}: numpy protocol loop vs greedy_decode")


def test_the_compiled_torch_loop_gives_the_interface_loops_tokens():
    """In float32 the torch reference's native loop is one compiled graph (impls/torch/compiled_transformer.py,
    not the eager loop the float64 case above runs): the interface loop decodes its tokens too, up to
    float32 near-ties. The shape is test_decoding_torch's, whose compiled graph it reuses."""
    pytest.importorskip("torch")
    from impls.torch import decoding

    checked = build(resolve("impls.torch:make_model"), ModelSpec("transformer", dtype="float32"))
    model = checked.adapter.model
    assert decoding.compiles(model)
    src, valid = source(batch=3)
    native = decoding.greedy_decode(model, src, valid, bos=1, steps=10)
    assert_same_greedy_tokens(greedy_tokens(checked, src, valid, bos=1, steps=10), native,
                              torch_logit_gap(model, src, valid, bos=1), "torch transformer: bridge loop vs compiled greedy_decode")


def test_an_adapter_without_its_own_loop_goes_through_the_protocol():
    pytest.importorskip("torch")
    checked = build(resolve("impls.torch:make_model"), ModelSpec("gru", dtype="float32"))
    src, valid = source(batch=2)
    calls = []

    class Counting(NumpyOnly):
        def decode(self, tgt, state):
            calls.append(np.shape(tgt))
            return super().decode(tgt, state)

    tokens = greedy_tokens(Counting(checked.adapter), src, valid, bos=0, steps=4)
    assert calls == [(2, 1)] * 4, "one Decoder.forward per token, BOS first, no early stop"
    np.testing.assert_array_equal(tokens, protocol_greedy_tokens(checked.adapter, src, valid, 0, 4))


# (implementation, family, what its compiled interface loop runs: the start of InterfaceLoop.how)
COMPILED = [
    *[("tensorflow", family, "tf.function, whole loop, XLA") for family in FAMILIES if family not in ("transformer", "speech")],
    # A growing key/value cache: a plain graph.
    *[("tensorflow", family, "tf.function, whole loop") for family in ("transformer", "speech")],
    ("tests.tricky.keras3_models:tied_embeddings", "gru", "tf.function, whole loop, XLA"),
    ("tests.tricky.keras3_models:tied_embeddings", "transformer", "tf.function, whole loop"),
    ("examples.keras2_d2l:make_model", "gru", "tf.function, whole loop, XLA"),  # Keras 2 (tf_keras)
    # d2l's attention decoder iterates over a tensor's time steps in Python: no graph traces it.
    ("examples.keras2_d2l:make_model", "bahdanau",
     "eager (not compiled: whole loop, XLA: OperatorNotAllowedInGraphError: Iterating over a symbolic `tf.Tensor`"),
    ("tests.tricky.mxnet_models:hybrid_decoder", "gru", "hybridize"),
    ("mxnet", "gru", "eager (not compiled: the decoder (Seq2SeqDecoder) is a gluon.Block, not a HybridBlock"),
    ("torch", "gru", "torch.compile, per step"),
]
FRAMEWORK = {"tensorflow": "tensorflow", "keras3": "keras", "keras2": "tf_keras", "mxnet": "mxnet", "torch": "torch"}


def framework_of(impl):
    return next(module for key, module in FRAMEWORK.items() if key in impl)


@pytest.mark.parametrize("impl, family, how", [pytest.param(*case, id=f"{case[0].split(':')[-1]}-{case[1]}") for case in COMPILED])
def test_the_compiled_interface_loop_gives_the_eager_loops_tokens(impl, family, how):
    """The interface loop as a model is deployed (tf.function and XLA, hybridize, torch.compile) decodes the
    eager loop's tokens, and says what it ran: compiled, in which form, or the eager loop and why not."""
    pytest.importorskip(framework_of(impl))
    if impl in BACKENDS and family not in ported(impl):
        pytest.skip(f"impls.{impl} has no {family} reference yet")
    checked = build(resolve(impl), ModelSpec(family))  # float64: no ties to flip between the two
    assert isinstance(checked, CheckedModel), checked
    src, valid = source(batch=5, family=family)
    loop = InterfaceLoop(checked, compiled=True)
    tokens = loop(src, valid, bos=1, steps=12)
    assert loop.how.startswith(how), loop.how
    np.testing.assert_array_equal(tokens, greedy_tokens(checked, src, valid, bos=1, steps=12),
                                  err_msg=f"{impl} {family}: compiled ({loop.how}) vs eager interface loop")
    assert loop.kind == "interface-compiled"
    again = source(batch=5, seed=1, family=family)  # new values, same shapes
    np.testing.assert_array_equal(loop(*again, bos=2, steps=12), greedy_tokens(checked, *again, bos=2, steps=12))


def test_an_adapter_without_a_compiled_loop_runs_eagerly_saying_so():
    pytest.importorskip("torch")
    checked = build(resolve("impls.torch:make_model"), ModelSpec("gru"))
    loop = InterfaceLoop(NumpyOnly(checked.adapter), compiled=True)
    src, valid = source(batch=2)
    np.testing.assert_array_equal(loop(src, valid, bos=1, steps=3), greedy_tokens(checked, src, valid, bos=1, steps=3))
    assert loop.how == "eager (not compiled: the adapter has no compiled_greedy_tokens)"
