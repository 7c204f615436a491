"""Canonical weights (docs/weights.md) in and out of the MXNet references: a round trip per family,
and the same weights giving PyTorch's logits and greedy tokens, through the adapters the suite wraps
models in (conformance.loading.build), for every family, in float64 and float32."""
import numpy as np
import pytest

from conformance import canonical
from conformance.assertions import relative_error
from conformance.compat import import_mxnet
from conformance.decoding import greedy_tokens
from conformance.loading import build, resolve
from conformance.spec import FAMILIES, Declared, ModelSpec

M = pytest.importorskip("impls.mxnet")
mx = import_mxnet()
from impls.mxnet.canonical import export_canonical, load_canonical  # noqa: E402
from conformance.sources import kind_of  # noqa: E402
from tests.conformance_run import family_params  # noqa: E402
from tests.decoding_inputs import source  # noqa: E402

STEPS = 10  # greedy tokens compared per example


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """{family: path of canonical random weights, seed 1}."""
    folder = tmp_path_factory.mktemp("canonical")
    files = {}
    for family in FAMILIES:
        files[family] = str(folder / f"{family}.safetensors")
        canonical.save(files[family], canonical.random_weights(ModelSpec(family), seed=1))
    return files


def batch(family, seed=3):
    """The family's source (token ids with ragged valid lengths, a full one and a one-token one among
    them; frames; images without lengths) and target ids of every kind."""
    rng = np.random.default_rng(seed)
    spec = ModelSpec(family)
    tgt = rng.integers(0, spec.tgt_vocab, (5, 6))
    if kind_of(family) != "tokens":
        src, valid = source(batch=5, seed=seed, family=family)
        return src, tgt, valid
    return rng.integers(0, spec.src_vocab, (5, 7)), tgt, np.array([7, 3, 1, 5, 2])


def mx_inputs(model, src, tgt, valid):
    """d2l's (enc_X, dec_X, *args) as MXNet arrays: float sources in the model's dtype, no lengths for images."""
    dtype = next(iter(model.collect_params().values())).dtype
    enc_X = mx.np.array(src, dtype=dtype if np.issubdtype(src.dtype, np.floating) else "int64")
    return [enc_X, mx.np.array(tgt, dtype="int64")] + ([] if valid is None else [mx.np.array(valid, dtype="int64")])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("family", family_params("mxnet"))
def test_round_trip(family, dtype, weight_files):
    """The factory declares the weights, holds them in the model's dtype, and gives them back exactly
    (files hold float32 values, which both dtypes represent exactly)."""
    spec = ModelSpec(family, dtype=dtype, weights=weight_files[family])
    declared = M.factory(spec)
    assert isinstance(declared, Declared) and declared.canonical_weights
    weights = canonical.load(spec.weights, spec)
    exported = export_canonical(declared.model)
    assert sorted(exported) == sorted(canonical.shapes(spec))
    for name, value in weights.items():
        assert exported[name].dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(exported[name], value, err_msg=name)
    # And loading what was exported changes nothing.
    load_canonical(declared.model, exported)
    assert all(np.array_equal(export_canonical(declared.model)[n], v) for n, v in weights.items())


def test_without_weights_the_factory_returns_the_bare_model():
    assert not isinstance(M.factory(ModelSpec("gru")), Declared)


@pytest.mark.parametrize("family", ["lstm", "transformer"])
def test_missing_and_leftover_weights_raise_and_change_nothing(family):
    spec = ModelSpec(family)
    model = M.make_model(spec)
    before = export_canonical(model)
    weights = canonical.random_weights(spec, seed=2)
    extra = dict(weights, **{"decoder.surplus.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match="no place for.*decoder.surplus.weight"):
        load_canonical(model, extra)
    fewer = dict(weights)
    del fewer["decoder.dense.bias"]
    with pytest.raises(ValueError, match="no canonical weights for decoder.dense.bias"):
        load_canonical(model, fewer)
    after = export_canonical(model)
    assert all(np.array_equal(after[n], v) for n, v in before.items())


@pytest.mark.parametrize("family", family_params("mxnet"))
def test_graphs_already_run_see_weights_loaded_later(family, weight_files):
    """Loading writes into the parameters in place: the hybridized d2l blocks and decoding.py's step
    graphs (static_alloc, traced on the old weights) compute with the new ones, like a fresh model."""
    spec = ModelSpec(family)
    model = M.make_model(spec)  # its own initialization, graphs built
    src, tgt, valid = batch(family)
    M.greedy_decode(model, src, valid, bos=1, steps=4)  # trace the fast path on the old weights
    load_canonical(model, canonical.load(weight_files[family], spec))
    fresh = M.make_model(spec.replace(weights=weight_files[family]))
    expected = M.stepwise_greedy_decode(fresh, src, valid, bos=1, steps=STEPS)
    np.testing.assert_array_equal(M.greedy_decode(model, src, valid, bos=1, steps=STEPS), expected)
    np.testing.assert_array_equal(M.stepwise_greedy_decode(model, src, valid, bos=1, steps=STEPS), expected)
    np.testing.assert_array_equal(model(*mx_inputs(model, src, tgt, valid)).asnumpy(),
                                  fresh(*mx_inputs(fresh, src, tgt, valid)).asnumpy())


# --- agreement with PyTorch ----------------------------------------------------------------------

def pair(family, dtype, weight_files):
    """The PyTorch and MXNet references holding the same canonical weights, built and wrapped as the
    suite builds them (factory -> Declared -> bridge adapter in a CheckedModel)."""
    pytest.importorskip("impls.torch")
    spec = ModelSpec(family, dtype=dtype, weights=weight_files[family])
    models = [build(resolve(f"impls.{backend}:factory"), spec) for backend in ("torch", "mxnet")]
    for model in models:
        assert getattr(model, "canonical_weights", False), getattr(model, "reason", model)
    return models


# Measured (this machine, MXNet 1.9.1, torch CPU) max|mx - torch| / max(1, max|torch|):
#   float64: rnn 6.5e-16, gru 5.3e-16, lstm 3.3e-16, bahdanau 4.4e-16, transformer 6.5e-14, mixed 4.9e-14,
#            speech 6.9e-14, captioning 5.5e-16
#   float32: rnn 2.6e-7, gru 1.6e-7, lstm 1.2e-7, bahdanau 2.3e-7, transformer 2.9e-7, mixed 3.2e-7,
#            speech 3.5e-7, captioning 3.4e-7
# The Transformer families' (speech's too) float64 residue is MXNet's LayerNorm: its `eps` parameter is a C float,
# so it normalizes with float32(1e-5) = 9.99999975e-06, not 1e-5 (with PyTorch's eps set to that
# value too, the difference falls to 9e-16). Both bounds leave an order of magnitude and more.
BOUND = {"float64": 1e-12, "float32": 1e-5}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("family", family_params("mxnet"))
def test_same_weights_give_torch_logits_and_tokens(family, dtype, weight_files):
    torch_model, mx_model = pair(family, dtype, weight_files)
    src, tgt, valid = batch(family)
    expected = torch_model.adapter.forward(src, tgt, valid)
    logits = mx_model.adapter.forward(src, tgt, valid)
    assert logits.dtype == np.dtype(dtype) and logits.shape == expected.shape
    difference, _ = relative_error(logits, expected)
    print(f"{family} {dtype}: max relative difference {difference:.3g}")
    assert difference < BOUND[dtype], f"{family} {dtype}: MXNet vs PyTorch logits differ by {difference:.3g}"
    if dtype == "float64":  # float32 ties may flip between summation orders; float64 ones cannot here
        tokens = greedy_tokens(torch_model, src, valid, bos=1, steps=STEPS)
        np.testing.assert_array_equal(greedy_tokens(mx_model, src, valid, bos=1, steps=STEPS), tokens)
        # The fast path of impls/mxnet/decoding.py (one cached graph per token) too.
        np.testing.assert_array_equal(M.greedy_decode(mx_model.adapter.model, src, valid, bos=1, steps=STEPS), tokens)
