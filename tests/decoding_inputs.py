"""Inputs shared by the decoding tests: a small source batch with ragged valid lengths, of the family's
kind (conformance/sources.py): token ids, feature frames or images."""
import numpy as np

from conformance.sources import kind_of
from conformance.spec import ModelSpec


def source(batch, src_steps=7, vocab=23, seed=0, family="gru"):
    """(source, valid lengths (batch,) or None for images); the first example uses every position.
    Frames are 4 * src_steps - 1 wide, so the speech encoder keeps src_steps positions."""
    spec, kind = ModelSpec(family), kind_of(family)
    rng = np.random.default_rng(seed)
    if kind == "images":
        return rng.standard_normal((batch, spec.channels, spec.height, spec.width)), None
    steps = src_steps if kind == "tokens" else 4 * src_steps - 1
    valid = rng.integers(1, steps + 1, size=batch)
    valid[0] = steps
    if kind == "frames":
        return rng.standard_normal((batch, steps, spec.num_features)), valid
    return rng.integers(0, vocab, size=(batch, steps)), valid


# Below this gap between its two largest logits (float64), a greedy choice may go either way in float32.
NEAR_TIE = 1e-4


def assert_same_greedy_tokens(got, expected, gap_at, what: str):
    """`got` == `expected` (batch, steps) greedy tokens, except after a near-tie that float32 rounding may
    break either way: at the first position where a row differs, `gap_at(row, prefix)`, the float64 gap
    between the two largest logits after `prefix` (that row's agreed tokens), must be below NEAR_TIE."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    for row in np.flatnonzero((got != expected).any(1)):
        t = int(np.argmax(got[row] != expected[row]))
        gap = gap_at(int(row), expected[row, :t])
        assert gap < NEAR_TIE, (f"{what}: row {row} differs at step {t} ({got[row, t]} vs {expected[row, t]}) where the "
                                f"two best logits are {gap:.2e} apart in float64, not a near-tie (< {NEAR_TIE})")


def torch_logit_gap(model, src, valid, bos: int):
    """gap_at for assert_same_greedy_tokens: teacher-forced through a float64 copy of a torch model."""
    import copy

    import torch

    model64 = copy.deepcopy(model).double().eval()

    @torch.inference_mode()
    def gap_at(row, prefix):
        x = torch.as_tensor(src[row : row + 1]), torch.as_tensor(valid[row : row + 1])
        state = model64.decoder.init_state(model64.encoder(*x), x[1])
        tgt = torch.as_tensor(np.concatenate([[bos], prefix]))[None].long()
        top2 = model64.decoder(tgt, state)[0][0, -1].topk(2).values
        return float(top2[0] - top2[1])

    return gap_at
