"""The interface loop (conformance.decoding), the one the benchmarks time for any implementation, gives
the tokens of each reference's own fast loop (`impls.<backend>.greedy_decode`), through the bridge's
native path and through the numpy protocol a user's own adapter offers."""
import importlib

import numpy as np
import pytest

from conformance.decoding import greedy_tokens, protocol_greedy_tokens
from conformance.harness import CheckedModel
from conformance.loading import build, resolve
from conformance.spec import FAMILIES, ModelSpec
from tests.conformance_run import BACKENDS, backend_param, ported
from tests.decoding_inputs import source


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
