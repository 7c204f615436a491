"""The pieces every family is made of (d2l chapters 9-11), as plain functions of arrays.

Written against the Python array API through `array_api_compat`: `xp` is the namespace of the
arrays at hand. On NumPy arrays this is the specification; on torch tensors the very same code is
differentiated by autograd (`model.NumpySeq2Seq.gradients`), so the gradients are those of the spec.
Token ids, valid lengths and masks stay NumPy arrays: they are inputs, never differentiated.
"""
from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace


class Params:
    """The canonical weights under a name prefix (docs/weights.md):
    `Params(weights, "decoder")["dense.weight"]` is `weights["decoder.dense.weight"]`."""

    def __init__(self, weights: dict, prefix: str):
        self.weights, self.prefix = weights, prefix

    def __getitem__(self, name: str):
        return self.weights[f"{self.prefix}.{name}"]

    def scope(self, name: str) -> "Params":
        return Params(self.weights, f"{self.prefix}.{name}")


def linear(X, weight, bias=None):
    """y = x @ weight.T + bias, weight (out, in): every affine map of the canonical weights."""
    Y = X @ weight.T
    return Y if bias is None else Y + bias


def affine(p: Params, name: str, X):
    """The affine map `name` of `p`, with its bias: `name.weight`, `name.bias`."""
    return linear(X, p[f"{name}.weight"], p[f"{name}.bias"])


def embedding(weight, ids):
    """Row i of `weight` for each id i. An id outside [0, vocab) raises: NumPy indexing would read
    -1 as the last row, in silence."""
    ids = np.asarray(ids)
    vocab = weight.shape[0]
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"token ids must be integers, not {ids.dtype}")
    outside = ids[(ids < 0) | (ids >= vocab)]
    if outside.size:
        raise IndexError(f"token id {outside[0]} is outside the vocabulary [0, {vocab})")
    xp = array_namespace(weight)
    return weight[xp.asarray(ids)]


def sigmoid(X):
    """σ(x) = 1 / (1 + e^-x), computed as (1 + tanh(x / 2)) / 2: the same function, and e^-x cannot
    overflow for very negative x."""
    xp = array_namespace(X)
    return (1 + xp.tanh(X / 2)) / 2


def relu(X):
    xp = array_namespace(X)
    return xp.where(X > 0, X, 0.0)


def gate_blocks(X, n: int):
    """The last axis cut into n equal blocks, in order: the gate rows of a recurrent cell."""
    size = X.shape[-1] // n
    return [X[..., i * size : (i + 1) * size] for i in range(n)]


def masked_softmax(scores, mask):
    """softmax over the last axis among the keys where `mask` (broadcast to `scores`) is True:
    a masked key gets weight exactly 0, so whatever it holds cannot reach the output."""
    xp = array_namespace(scores)
    scores = xp.where(xp.asarray(mask), scores, -math.inf)
    e = xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def key_mask(valid_lens, num_keys: int) -> np.ndarray:
    """(batch, num_keys): True for the keys within each example's valid length."""
    return np.arange(num_keys) < np.asarray(valid_lens)[:, None]


def layer_norm(X, gain, bias, eps: float = 1e-5):
    """Normalise over the features (biased variance), then scale by `gain` and shift by `bias`."""
    xp = array_namespace(X)
    mean = xp.mean(X, axis=-1, keepdims=True)
    var = xp.mean((X - mean) ** 2, axis=-1, keepdims=True)
    return (X - mean) / xp.sqrt(var + eps) * gain + bias


def positions(start: int, steps: int, num_hiddens: int) -> np.ndarray:
    """Sinusoidal positions t = start .. start + steps - 1, in float64 (the caller casts):
    P[t, 2j] = sin(t / 10000^(2j/H)), P[t, 2j+1] = cos(t / 10000^(2j/H))."""
    t = np.arange(start, start + steps, dtype=np.float64)[:, None]
    angles = t / 10000 ** (np.arange(0, num_hiddens, 2, dtype=np.float64) / num_hiddens)
    P = np.zeros((steps, num_hiddens))
    P[:, 0::2], P[:, 1::2] = np.sin(angles), np.cos(angles)
    return P


def step_mask(valid_lens, steps: int) -> np.ndarray:
    """(batch, steps, 1): True for the steps within each example's valid length, to zero the others."""
    return key_mask(valid_lens, steps)[..., None]


def conv1d_stride2(X, weight, bias):
    """A convolution over time, kernel 3, stride 2, zero padding 1: (batch, steps, in) ->
    (batch, (steps - 1) // 2 + 1, out), y_t = Σ_k weight[:, :, k] x_(2t + k - 1) + bias, weight (out, in, 3)."""
    xp = array_namespace(X)
    batch, steps, channels = X.shape
    out_steps = (steps - 1) // 2 + 1
    zero = xp.zeros((batch, 1, channels), dtype=X.dtype)
    padded = xp.concat([zero, X, zero], axis=1)  # padded[:, s] = x_(s - 1)
    Y = bias
    for k in range(3):
        Y = Y + linear(padded[:, k : k + 2 * out_steps - 1 : 2], weight[:, :, k])
    return Y


def conv2d_stride2(X, weight):
    """A 2-D convolution, kernel 3x3, stride 2, zero padding 1, no bias, channels last: (batch, h, w, in)
    -> (batch, (h - 1) // 2 + 1, (w - 1) // 2 + 1, out), weight (out, in, 3, 3) indexed [.., dy, dx]."""
    xp = array_namespace(X)
    batch, height, width, channels = X.shape
    out_h, out_w = (height - 1) // 2 + 1, (width - 1) // 2 + 1
    rows = xp.zeros((batch, 1, width, channels), dtype=X.dtype)
    padded = xp.concat([rows, X, rows], axis=1)
    columns = xp.zeros((batch, height + 2, 1, channels), dtype=X.dtype)
    padded = xp.concat([columns, padded, columns], axis=2)
    Y = 0.0
    for dy in range(3):
        for dx in range(3):
            Y = Y + linear(padded[:, dy : dy + 2 * out_h - 1 : 2, dx : dx + 2 * out_w - 1 : 2], weight[:, :, dy, dx])
    return Y


def batch_norm(p: Params, X, eps: float = 1e-5):
    """BatchNorm in evaluation, over the last axis (channels): (x − running_mean) / √(running_var + ε)
    · weight + bias. The running statistics are canonical weights; no batch statistic is ever used."""
    xp = array_namespace(X)
    return (X - p["running_mean"]) / xp.sqrt(p["running_var"] + eps) * p["weight"] + p["bias"]


def average_pool2(X):
    """2x2 average pooling, stride 2, channels last: (batch, h, w, c) -> (batch, h // 2, w // 2, c)."""
    h, w = X.shape[1] // 2 * 2, X.shape[2] // 2 * 2
    return (X[:, 0:h:2, 0:w:2] + X[:, 0:h:2, 1:w:2] + X[:, 1:h:2, 0:w:2] + X[:, 1:h:2, 1:w:2]) / 4
