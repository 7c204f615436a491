"""Canonical weights (docs/weights.md) in and out of the PyTorch references.

The layouts already agree (weight (out, in), GRU rows reset/update/new, LSTM rows input/forget/
cell/output, two recurrent biases); names differ, and the attention projections are fused:
self-attention's W_qkv stacks the rows of W_q, W_k, W_v, cross-attention's W_kv those of W_k, W_v.
"""
import re

import numpy as np
import torch

from .. import unfused


def canonical_name(key: str) -> str:
    """The canonical name of a PyTorch state_dict key."""
    key = re.sub(r"\.rnn\.(weight|bias)_(ih|hh)_l(\d+)$", r".rnn.\3.\1_\2", key)
    key = re.sub(r"\.addnorm(\d)\.ln\.", r".norm\1.", key.replace(".blks.", ".blocks."))
    return key.replace(".ffn.0.", ".ffn.dense1.").replace(".ffn.2.", ".ffn.dense2.")


def canonical_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict entries that canonical weights hold: BatchNorm's running statistics are; its
    `num_batches_tracked`, a counter that only training reads, is not."""
    return {key: value for key, value in model.state_dict().items() if not key.endswith(".num_batches_tracked")}


def load_canonical(model: torch.nn.Module, weights: dict[str, np.ndarray]) -> None:
    """Copy canonical `weights` into `model`: every parameter is covered and none is left over."""
    weights, state = dict(weights), {}
    for key, value in canonical_state(model).items():
        names = unfused(canonical_name(key))
        rows = np.concatenate([weights.pop(name) for name in names])
        state[key] = torch.as_tensor(rows, dtype=value.dtype).reshape(value.shape)
    if weights:
        raise ValueError(f"canonical weights the model has no place for: {sorted(weights)}")
    model.load_state_dict(state)  # BatchNorm fills in a missing num_batches_tracked itself


def export_canonical(model: torch.nn.Module) -> dict[str, np.ndarray]:
    weights = {}
    for key, value in canonical_state(model).items():
        names = unfused(canonical_name(key))
        weights |= zip(names, np.split(value.detach().cpu().numpy(), len(names)))
    return weights
