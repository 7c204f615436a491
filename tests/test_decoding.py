"""Every backend's decoding entry points, the ones the benchmarks time, agree with the d2l interface
the conformance suite checks: greedy_decode (each backend's fast loop) and recompute_greedy_decode
give the tokens of a step-by-step decode through Decoder.forward with the returned state.
Backend-specific fast paths are checked step by step in test_decoding_<backend>.py."""
import importlib

import numpy as np
import pytest

from conformance.spec import FAMILIES, ModelSpec
from tests.conformance_run import BACKENDS, backend_param, ported
from tests.decoding_inputs import source


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", [backend_param(name, name) for name in BACKENDS])
def test_greedy_and_recompute_give_the_stepwise_tokens(backend, family):
    impl = importlib.import_module(f"impls.{backend}")
    if family not in ported(backend):
        pytest.skip(f"impls.{backend} has no {family} reference yet")
    model = impl.make_model(ModelSpec(family))  # float64: ties cannot flip between summation orders
    src, valid = source(batch=5, family=family)
    expected = impl.stepwise_greedy_decode(model, src, valid, bos=1, steps=12)
    assert expected.shape == (5, 12) and expected.dtype == np.int64
    np.testing.assert_array_equal(impl.greedy_decode(model, src, valid, bos=1, steps=12), expected,
                                  err_msg=f"{backend} {family}: greedy_decode vs stepwise decoding")
    np.testing.assert_array_equal(impl.recompute_greedy_decode(model, src, valid, bos=1, steps=12), expected,
                                  err_msg=f"{backend} {family}: recompute_greedy_decode vs stepwise decoding")


@pytest.mark.parametrize("backend", [backend_param(name, name) for name in BACKENDS])
def test_the_backend_exports_the_benchmark_entry_points(backend):
    impl = importlib.import_module(f"impls.{backend}")
    missing = [name for name in ("encode", "greedy_decode", "recompute_greedy_decode", "stepwise_greedy_decode")
               if not callable(getattr(impl, name, None))]
    assert not missing, f"impls.{backend} lacks {missing} (benchmarks/backends.py documents them)"
