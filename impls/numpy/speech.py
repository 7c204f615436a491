"""Speech recognition as Speech2Text does it, on canonical weights (docs/weights.md): feature frames
subsampled by two stride-2 convolutions over time, a Transformer encoder over the subsampled positions
with its keys masked past each example's subsampled length, and the Transformer decoder."""
from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace

from .. import conv_lengths
from .layers import Params, conv1d_stride2, positions, relu, step_mask
from .transformer import TransformerDecoder, TransformerEncoder


class SpeechEncoder:
    """Frames (batch, frames, features) -> (memory (batch, positions, H), its valid lengths (batch,)).

    Before each convolution the frames (or positions) past an example's valid length are set to 0, so
    that a padded example reads exactly what it reads alone, unpadded (where the convolution's own zero
    padding is all there is). Each convolution is followed by a ReLU and maps L to (L - 1) // 2 + 1."""

    def __init__(self, num_layers: int, num_heads: int, convolutions: int = 2):
        self.transformer = TransformerEncoder(num_layers, num_heads)
        self.convolutions = convolutions

    def __call__(self, p: Params, X, valid_lens):
        xp = array_namespace(X)
        lengths = np.asarray(valid_lens)
        for i in range(self.convolutions):
            X = xp.where(xp.asarray(step_mask(lengths, X.shape[1])), X, 0.0)
            X = relu(conv1d_stride2(X, p[f"subsampling.{i}.weight"], p[f"subsampling.{i}.bias"]))
            lengths = conv_lengths(lengths)
        H = X.shape[-1]
        X = X * math.sqrt(H) + xp.asarray(positions(0, X.shape[1], H), dtype=X.dtype)  # as a token embedding is
        return self.transformer.blocks(p, X, lengths), lengths


class SpeechDecoder(TransformerDecoder):
    """The Transformer decoder over the subsampled memory, masked past the encoder's lengths."""

    def memory(self, enc_outputs, valid_lens):
        return enc_outputs  # (memory, subsampled lengths): the frame lengths are no longer the memory's
