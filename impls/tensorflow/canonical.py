"""Canonical weights (docs/weights.md) in and out of the TensorFlow (Keras 3) references.

What differs from the canonical layout, and how each side is converted:
- Dense kernels are (in, out): the canonical weight (out, in) is their transpose.
- Fused attention projections: self-attention's W_qkv computes [q | k | v] along its output axis
  (transformer.py splits it with tf.split(..., 3) and each part into heads in contiguous blocks, as
  the canonical W_q, W_k, W_v are), cross-attention's W_kv [k | v]: the canonical weights are the
  column blocks of the kernel, the bias blocks likewise.
- GRUCell (reset_after=True, the only convention that matches): gate blocks z, r, h where the
  canonical rows are r, z, n; its bias is (2, 3H) = [input bias; recurrent bias], the two canonical
  biases.
- LSTMCell and SimpleRNNCell have one bias where the canonical cell has bias_ih and bias_hh: loading
  stores their sum; exporting gives bias_ih = the bias and bias_hh = 0. That pair computes exactly
  what the loaded one did (every pre-activation adds the two), so an export is canonical-equivalent,
  not bit-identical in the split (and a float32 model rounds the sum once, to its dtype).
  LSTM gate blocks are i, f, c, o in both layouts.
- LayerNormalization: gamma is the canonical weight, beta the bias.
- Convolution kernels are (kernel, in, out) over time and (kh, kw, in, out) over images, where the
  canonical weights are (out, in, kernel) and (out, in, kh, kw): their axes reversed, but for kh, kw.
- BatchNormalization: gamma and beta as a layer norm's; moving_mean and moving_variance are the
  canonical buffers running_mean and running_var.

Variables are found by walking the model's layers by attribute (`encoder.blks.0.attention.W_qkv`),
never by Keras' variable paths, whose layer names (`dense_17`) are numbered per process.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable

import keras
import numpy as np

from .. import unfused  # the canonical names a fused Dense stacks, in order

GRU_GATES = [1, 0, 2]  # Keras' z, r, h blocks from the canonical r, z, n ones, and back (its own inverse)
LEAVES = (keras.layers.Embedding, keras.layers.Dense, keras.layers.LayerNormalization, keras.layers.BatchNormalization,
          keras.layers.Conv1D, keras.layers.Conv2D,
          keras.layers.SimpleRNNCell, keras.layers.GRUCell, keras.layers.LSTMCell)
# The canonical convolution weight's axes in the order Keras keeps them: (out, in, k) -> (k, in, out),
# (out, in, kh, kw) -> (kh, kw, in, out).
CONV_AXES = {1: (2, 1, 0), 2: (2, 3, 1, 0)}


@dataclasses.dataclass
class Slot:
    """One Keras variable and the canonical arrays it holds (several when fused or biases are merged)."""

    variable: object
    names: list[str]
    to_variable: Callable  # [canonical arrays, in `names` order] -> the variable's value
    to_canonical: Callable  # the variable's value -> [canonical arrays]


def leaf_layers(layer, path: str = "", seen: set | None = None):
    """(attribute path, layer) of every Embedding, Dense, LayerNormalization and recurrent cell under
    `layer`, depth first in attribute order; a layer reached twice is listed once."""
    seen = set() if seen is None else seen
    for name, value in vars(layer).items():
        if name.startswith("_"):
            continue
        if isinstance(value, keras.layers.Layer):
            children = [(name, value)]
        elif isinstance(value, (list, tuple)):  # a list of layers, kept by Keras as a TrackedList
            children = [(f"{name}.{i}", v) for i, v in enumerate(value) if isinstance(v, keras.layers.Layer)]
        else:
            continue
        for child_name, child in children:
            if id(child) in seen:
                continue
            seen.add(id(child))
            child_path = f"{path}{child_name}"
            if isinstance(child, LEAVES):
                yield child_path, child
            else:
                yield from leaf_layers(child, f"{child_path}.", seen)


def canonical_prefix(path: str) -> str:
    """`decoder.blks.0.addnorm1.ln` -> `decoder.blocks.0.norm1`; `encoder.rnn.cell.cells.1` -> `encoder.rnn.1`."""
    path = re.sub(r"\.rnn\.(?:cell\.)?cells\.(\d+)$", r".rnn.\1", path)  # keras.layers.RNN's stack, or the bare stack
    path = re.sub(r"\.addnorm(\d+)\.ln$", r".norm\1", path)
    return re.sub(r"(^|\.)blks\.", r"\1blocks.", path)


def transposed_blocks(count):
    """A Dense kernel (in, count * out) holding `count` canonical (out, in) weights side by side."""
    return (lambda parts: np.concatenate(parts).T,
            lambda kernel: np.split(kernel.T, count))


def stacked(count):
    return lambda parts: np.concatenate(parts), lambda value: np.split(value, count)


def gru_gates(weight):
    """Canonical rows (r, z, n) <-> Keras blocks (z, r, h): the first two of three blocks swapped."""
    return np.concatenate([np.split(weight, 3)[i] for i in GRU_GATES])


def slots(layer, path: str) -> list[Slot]:
    prefix = canonical_prefix(path)
    identity = (lambda parts: parts[0], lambda value: [value])
    if isinstance(layer, keras.layers.Embedding):
        return [Slot(layer.embeddings, [f"{prefix}.weight"], *identity)]
    if isinstance(layer, keras.layers.LayerNormalization):
        if not (layer.scale and layer.center):
            raise ValueError(f"{path}: a canonical layer norm has a gain and a bias")
        return [Slot(layer.gamma, [f"{prefix}.weight"], *identity), Slot(layer.beta, [f"{prefix}.bias"], *identity)]
    if isinstance(layer, keras.layers.BatchNormalization):
        if not (layer.scale and layer.center):
            raise ValueError(f"{path}: a canonical BatchNorm has a gain and a bias")
        return [Slot(layer.gamma, [f"{prefix}.weight"], *identity), Slot(layer.beta, [f"{prefix}.bias"], *identity),
                Slot(layer.moving_mean, [f"{prefix}.running_mean"], *identity),
                Slot(layer.moving_variance, [f"{prefix}.running_var"], *identity)]
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D)):
        axes = CONV_AXES[layer.rank]
        kernel = Slot(layer.kernel, [f"{prefix}.weight"], lambda parts: parts[0].transpose(axes),
                      lambda kernel: [kernel.transpose(np.argsort(axes))])
        return [kernel, Slot(layer.bias, [f"{prefix}.bias"], *identity)] if layer.use_bias else [kernel]
    if isinstance(layer, keras.layers.Dense):
        weights, biases = unfused(f"{prefix}.weight"), unfused(f"{prefix}.bias")
        kernel = Slot(layer.kernel, weights, *transposed_blocks(len(weights)))
        if not layer.use_bias:
            return [kernel]
        return [kernel, Slot(layer.bias, biases, *stacked(len(biases)))]
    # A recurrent cell: layer `l` of a stack.
    names = {k: f"{prefix}.{k}" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    if isinstance(layer, keras.layers.GRUCell):
        if not layer.reset_after:
            raise ValueError(f"{path}: a GRUCell with reset_after=False applies the reset gate before the "
                             "recurrent matmul; the canonical GRU applies it after")
        gates = (lambda parts: gru_gates(parts[0]).T, lambda kernel: [gru_gates(kernel.T)])
        bias = (lambda parts: np.stack([gru_gates(b) for b in parts]),
                lambda value: [gru_gates(b) for b in value])
    else:  # LSTMCell (gates i, f, c, o as canonical) or SimpleRNNCell: one bias for the two canonical ones
        gates = (lambda parts: parts[0].T, lambda kernel: [kernel.T])
        bias = (lambda parts: parts[0] + parts[1], lambda value: [value, np.zeros_like(value)])
    if not layer.use_bias:
        raise ValueError(f"{path}: a canonical recurrent cell has biases")
    return [Slot(layer.kernel, [names["weight_ih"]], *gates),
            Slot(layer.recurrent_kernel, [names["weight_hh"]], *gates),
            Slot(layer.bias, [names["bias_ih"], names["bias_hh"]], *bias)]


def model_slots(model) -> list[Slot]:
    """Every variable of `model` in a slot; ValueError naming the variables no canonical weight maps to."""
    listed = [slot for path, layer in leaf_layers(model) for slot in slots(layer, path)]
    covered = {id(slot.variable) for slot in listed}
    unmapped = [v.path for v in model.weights if id(v) not in covered]
    if unmapped:
        raise ValueError(f"model variables no canonical weight maps to: {unmapped}")
    return listed


def load_canonical(model, weights: dict[str, np.ndarray]) -> None:
    """Copy canonical `weights` into the built `model`'s variables, in place (so every function traced
    over them, the XLA decoding loops included, sees the new values). Every variable is covered and
    no weight is left over; on any mismatch nothing is assigned."""
    weights, assignments = dict(weights), []
    for slot in model_slots(model):
        missing = [n for n in slot.names if n not in weights]
        if missing:
            raise ValueError(f"canonical weights lack {missing}, for the model's {slot.variable.path}")
        value = np.asarray(slot.to_variable([weights.pop(n) for n in slot.names]))
        if value.shape != tuple(slot.variable.shape):
            raise ValueError(f"{slot.names} make a {value.shape} array; {slot.variable.path} is {tuple(slot.variable.shape)}")
        assignments.append((slot.variable, value.astype(slot.variable.dtype)))
    if weights:
        raise ValueError(f"canonical weights the model has no place for: {sorted(weights)}")
    for variable, value in assignments:
        variable.assign(value)


def export_canonical(model) -> dict[str, np.ndarray]:
    """The model's weights under their canonical names, in its dtype. LSTM and RNN cells give their one
    bias as bias_ih and zeros as bias_hh (see the module docstring)."""
    weights = {}
    for slot in model_slots(model):
        weights |= zip(slot.names, slot.to_canonical(np.asarray(slot.variable.numpy())))
    return weights
