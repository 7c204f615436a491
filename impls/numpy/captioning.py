"""Image captioning as "Show, Attend and Tell" does it, on canonical weights (docs/weights.md): a small
CNN (blocks of convolution, BatchNorm, ReLU) pooled to a grid of positions, and the additive-attention
GRU decoder over the grid (the `mixed` family's)."""
from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace

from .bahdanau import MemoryAttentionDecoder
from .layers import Params, average_pool2, batch_norm, conv2d_stride2, relu


class CaptioningEncoder:
    """Images (batch, channels, height, width) -> grid features (batch, positions, H).

    Each block: a 3x3 convolution with stride 2 and zero padding 1 (no bias), BatchNorm with its running
    statistics, ReLU. Then 2x2 average pooling, and the grid read row by row: position y * width + x."""

    def __init__(self, num_layers: int):
        self.num_layers = num_layers

    def __call__(self, p: Params, X, valid_lens=None):
        xp = array_namespace(X)
        X = xp.permute_dims(X, (0, 2, 3, 1))  # channels last: every map below acts on the last axis
        for i in range(self.num_layers):
            block = p.scope(f"cnn.{i}")
            X = relu(batch_norm(block.scope("norm"), conv2d_stride2(X, block["conv.weight"])))
        X = average_pool2(X)
        batch, height, width, channels = X.shape
        return xp.reshape(X, (batch, height * width, channels))


class GridAttentionDecoder(MemoryAttentionDecoder):
    """Attends over every grid position (an image has no padding); h0 from the mean over the grid."""

    def init_state(self, p: Params, memory, valid_lens=None):
        return super().init_state(p, memory, np.full(memory.shape[0], memory.shape[1]))
