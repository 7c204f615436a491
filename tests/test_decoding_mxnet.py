"""MXNet's fast decoding paths: one cached graph for every batch and length, the d2l path left alone,
and out-of-vocabulary input. That greedy_decode gives the stepwise tokens for every family is in
test_decoding.py."""
import warnings

import numpy as np
import pytest

from conformance.spec import ModelSpec
from tests.decoding_inputs import source

M = pytest.importorskip("impls.mxnet")

from impls.mxnet.decoding import _stepper  # noqa: E402
from tests.conformance_run import family_params  # noqa: E402


@pytest.fixture(scope="module", params=family_params("mxnet"))
def family_model(request):
    """(family, its reference in float64: ties cannot flip between summation orders)."""
    return request.param, M.make_model(ModelSpec(request.param))


def test_one_graph_serves_every_batch_and_length(family_model):
    """Every family's greedy_decode runs a step graph, traced once per decoder: no batch size or decode
    length may be baked in (nor, for speech, a number of encoder positions; images have no lengths)."""
    family, model = family_model
    assert _stepper(model.decoder) is not None, f"{family}: greedy_decode has no step graph, only the readable loop"
    src, valid = source(batch=3, seed=1, family=family)
    for batch, steps in ((3, 9), (1, 4), (3, 2)):
        lengths = None if valid is None else valid[:batch]
        expected = M.stepwise_greedy_decode(model, src[:batch], lengths, bos=2, steps=steps)
        np.testing.assert_array_equal(M.greedy_decode(model, src[:batch], lengths, bos=2, steps=steps), expected)


def test_greedy_decode_leaves_the_d2l_path_alone():
    """Same weights, and the d2l blocks keep their own traced graphs: Decoder.forward neither
    re-traces (Gluon would warn about the key projections it leaves unused) nor changes."""
    model = M.make_model(ModelSpec("bahdanau", dtype="float32"))
    src, valid = source(batch=2)
    before = {name: p.data().asnumpy() for name, p in model.collect_params().items()}
    expected = M.stepwise_greedy_decode(model, src, valid, bos=1, steps=4)
    M.greedy_decode(model, src, valid, bos=1, steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(M.stepwise_greedy_decode(model, src, valid, bos=1, steps=4), expected)
    for name, p in model.collect_params().items():
        np.testing.assert_array_equal(p.data().asnumpy(), before[name], err_msg=name)


def test_out_of_vocabulary_bos_raises():
    model = M.make_model(ModelSpec("gru"))
    with pytest.raises(IndexError):
        M.greedy_decode(model, *source(batch=2), bos=29, steps=3)
