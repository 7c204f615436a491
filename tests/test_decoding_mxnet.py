"""The MXNet decoding entry points the benchmarks time agree with the d2l interface the conformance
suite checks: greedy_decode (one cached graph per token) and recompute_greedy_decode give the
tokens of a step-by-step decode through Decoder.forward with the returned state."""
import warnings

import numpy as np
import pytest

from conformance.spec import FAMILIES, ModelSpec

M = pytest.importorskip("impls.mxnet")


def source(batch, src_steps=7, vocab=23, seed=0):
    rng = np.random.default_rng(seed)
    valid = rng.integers(1, src_steps + 1, size=batch)
    valid[0] = src_steps
    return rng.integers(0, vocab, size=(batch, src_steps)), valid


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request):
    return M.make_model(ModelSpec(request.param))  # float64: ties cannot flip between summation orders


def test_greedy_and_recompute_give_the_stepwise_tokens(family_model):
    model = family_model
    src, valid = source(batch=5)
    expected = M.stepwise_greedy_decode(model, src, valid, bos=1, steps=12)
    assert expected.shape == (5, 12) and expected.dtype == np.int64
    np.testing.assert_array_equal(M.greedy_decode(model, src, valid, bos=1, steps=12), expected)
    np.testing.assert_array_equal(M.recompute_greedy_decode(model, src, valid, bos=1, steps=12), expected)


def test_one_graph_serves_every_batch_and_length(family_model):
    """The step graph is traced once per decoder: no batch size or decode length may be baked in."""
    model, (src, valid) = family_model, source(batch=3, seed=1)
    for batch, steps in ((3, 9), (1, 4), (3, 2)):
        expected = M.stepwise_greedy_decode(model, src[:batch], valid[:batch], bos=2, steps=steps)
        np.testing.assert_array_equal(M.greedy_decode(model, src[:batch], valid[:batch], bos=2, steps=steps), expected)


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
