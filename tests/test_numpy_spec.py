"""impls/numpy, the executable specification of the canonical weights (docs/weights.md), agrees with
the PyTorch references, which pass every contract: same weights, same logits to float64 rounding,
same greedy tokens. Without torch its gradient contracts are skipped, saying why."""
import json

import numpy as np
import pytest

from conformance import FAMILIES, ModelSpec, canonical, loading
from conformance.sources import kind_of
from conformance.decoding import greedy_tokens
from impls.numpy import factory as numpy_factory
from impls.numpy import make_model as numpy_model


@pytest.fixture
def torch_impls():
    return pytest.importorskip("impls.torch", reason="torch is not installed")


# Measured max |torch - numpy| / max|torch| over 10 weight seeds (B=8, S=12, T=10, ragged valid
# lengths): rnn 7.9e-16, gru 7.7e-16, lstm 8.3e-16, bahdanau 6.8e-16, transformer 1.1e-15, mixed
# 1.2e-15: a few float64 ulps, from the order of additions (fused projections, softmax and matmul
# kernels). 1e-12 leaves three orders of headroom for that rounding, while a disagreement of meaning
# (a gate order, a scale, a mask; or the float32-rounded position table PyTorch held until it was
# fixed, 6e-9) lands orders of magnitude above it.
AGREE = 1e-12


def random_batch(rng, spec, batch=5, src_steps=7, tgt_steps=6):
    """(source of the family's kind, targets, valid lengths or None for images)."""
    kind = kind_of(spec.family)
    if kind == "images":
        src, lens = rng.standard_normal((batch, spec.channels, spec.height, spec.width)), None
    else:
        steps = src_steps if kind == "tokens" else 4 * src_steps - 1  # frames: 4 * 7 - 1, subsampled to 7
        lens = rng.integers(1, steps + 1, size=batch)
        lens[0], lens[1] = steps, 1  # a full source and a one-step one among the ragged
        shape = (batch, steps) if kind == "tokens" else (batch, steps, spec.num_features)
        src = rng.integers(0, spec.src_vocab, shape) if kind == "tokens" else rng.standard_normal(shape)
    return src, rng.integers(0, spec.tgt_vocab, (batch, tgt_steps)), lens


def canonical_spec(tmp_path, family, seed, dtype="float64"):
    """The family's spec with `weights` naming a file of canonical weights drawn from `seed`."""
    spec = ModelSpec(family, dtype=dtype)
    path = tmp_path / f"{family}-{seed}.safetensors"
    canonical.save(path, canonical.random_weights(spec, seed))
    return spec.replace(weights=str(path))


def declared_canonical(made):
    assert made.canonical_weights
    return made.model


def relative(actual, expected):
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def torch_logits(model, src, tgt, lens):
    import torch

    with torch.no_grad():
        return model(torch.as_tensor(src), torch.as_tensor(tgt), *(() if lens is None else (torch.as_tensor(lens),))).numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_numpy_spec_agrees_with_torch(tmp_path, torch_impls, family):
    """Teacher-forced logits on canonical weights agree to AGREE; greedy tokens are equal."""
    worst = 0.0
    for seed in range(3):
        spec = canonical_spec(tmp_path, family, seed)
        reference, ours = declared_canonical(torch_impls.factory(spec)), declared_canonical(numpy_factory(spec))
        src, tgt, lens = random_batch(np.random.default_rng(seed), spec)
        worst = max(worst, relative(ours.forward(src, tgt, lens), torch_logits(reference, src, tgt, lens)))
        np.testing.assert_array_equal(greedy_tokens(ours, src, lens, 0, 8), torch_impls.greedy_decode(reference, src, lens, 0, 8))
    print(f"{family}: max relative logit difference numpy vs torch (float64) {worst:.1e}")
    assert worst <= AGREE


@pytest.mark.parametrize("family", FAMILIES)
def test_float32_spec_rounds_like_float32(tmp_path, family):
    """The float32 build holds the same weights (float32 storage) and computes in float32: its logits
    differ from the float64 build's by float32 rounding only. Measured over 10 seeds (B=8, S=12, T=10),
    max relative: rnn 3.1e-7, gru 2.0e-7, lstm 1.9e-7, bahdanau 1.9e-7, transformer 7.6e-7, mixed
    9.2e-7; the bound is the suite's float32 tolerance (conformance/tolerances.py)."""
    exact = declared_canonical(numpy_factory(canonical_spec(tmp_path, family, 0)))
    spec = canonical_spec(tmp_path, family, 0, "float32")
    rounded = declared_canonical(numpy_factory(spec))
    src, tgt, lens = random_batch(np.random.default_rng(0), spec)
    logits = rounded.forward(src, tgt, lens)
    assert logits.dtype == np.float32
    difference = relative(logits.astype(np.float64), exact.forward(src, tgt, lens))
    print(f"{family}: max relative logit difference float32 vs float64 {difference:.1e}")
    assert 0 < difference <= 1e-5


def test_builtin_name_numpy_is_the_installed_spec():
    """`--impl=numpy` names impls/numpy as installed: conformance_impls.numpy."""
    impl = loading.resolve("numpy")
    assert not impl.error and impl.factory.__module__ == "conformance_impls.numpy.factory", impl.error


def test_out_of_vocabulary_ids_raise_in_numpy_spec():
    """NumPy indexing reads -1 as the last row: the spec checks ids itself."""
    model = numpy_model(ModelSpec("gru"))
    src, tgt, lens = np.array([[1, 2]]), np.array([[3]]), np.array([2])
    for bad_src, bad_tgt in ((np.array([[1, -1]]), tgt), (src, np.array([[29]]))):
        with pytest.raises(IndexError, match="outside the vocabulary"):
            model.forward(bad_src, bad_tgt, lens)


NO_TORCH = '''
import sys


class NoTorch:
    """As if torch were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}")


sys.meta_path.insert(0, NoTorch())
'''


def test_without_torch_gradient_contracts_skip_saying_why(pytester, repo_on_pythonpath):
    """With torch not importable (a plugin loaded before the suite hides it), every contract passes
    but those needing gradients, which are skipped with the reason."""
    pytester.makepyfile(no_torch=NO_TORCH)
    report = pytester.path / "report"
    outcome = pytester.runpytest_subprocess("-p", "no_torch", "--pyargs", "conformance", "--impl=impls.numpy:factory",
                                            "--family=gru", f"--conformance-report={report}", "-p", "no:cacheprovider", "-q")
    results = json.loads(report.with_suffix(".json").read_text())["results"]
    by_outcome = {o: {r["contract"] for r in results if r["outcome"] == o} for o in {r["outcome"] for r in results}}
    gradients = {"encoder_gradient_through_state", "future_tokens_do_not_change_past_gradients"}
    assert by_outcome.pop("skipped") == gradients | {"wrong_source_size_raises"}  # that one: token ids have no size
    assert set(by_outcome) == {"passed"}, outcome.stdout.str()[-3000:]
    reasons = {r["message"] for r in results if r["outcome"] == "skipped" and r["contract"] in gradients}
    assert all("torch cannot be imported here (No module named 'torch')" in reason for reason in reasons), reasons
