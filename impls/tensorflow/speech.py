"""Speech recognition as Speech2Text does it: feature frames subsampled by two stride-2 convolutions,
a Transformer encoder over the subsampled positions, and the Transformer decoder with its cache."""
import math

import keras
import tensorflow as tf

from .. import conv_lengths
from .attention import key_mask
from .d2l import Encoder
from .transformer import PositionalEncoding, TransformerDecoder, TransformerEncoderBlock


def zero_beyond(X, valid_lens):
    """X (batch, steps, features) with every step at or past its example's valid length set to 0."""
    within = tf.sequence_mask(valid_lens, tf.shape(X)[1])[:, :, None]
    return tf.where(within, X, tf.zeros_like(X))


class SpeechEncoder(Encoder):
    """Frames (batch, frames, num_features) -> (memory (batch, positions, num_hiddens), its valid lengths):
    positions past a length are never attended to."""

    def __init__(self, num_features, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len,
                 convolutions=2, **kwargs):
        super().__init__(**kwargs)
        self.num_features, self.num_hiddens = num_features, num_hiddens
        # Kernel 3, stride 2, zero padding 1 on both sides (padded by hand: Keras' "same" pads an even
        # width on the right only, PyTorch's padding=1 on both sides), each followed by ReLU.
        self.subsampling = [keras.layers.Conv1D(num_hiddens, 3, strides=2, activation="relu") for _ in range(convolutions)]
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = [TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout) for _ in range(num_blks)]

    def subsample(self, X, valid_lens):
        """Frames past each example's length are zeroed before each convolution, so a padded example
        reads what it reads alone. -> (positions (batch, positions, num_hiddens), lengths in positions)."""
        for conv in self.subsampling:
            X = conv(tf.pad(zero_beyond(X, valid_lens), [[0, 0], [1, 1], [0, 0]]))
            valid_lens = conv_lengths(valid_lens)
        return X, valid_lens

    def call(self, X, valid_lens):
        if X.shape[-1] != self.num_features:  # a Conv1D built for F features would say it less plainly
            raise ValueError(f"frames of {X.shape[-1]} features; the encoder reads {self.num_features}")
        X, lengths = self.subsample(X, valid_lens)
        X = self.pos_encoding(X * math.sqrt(self.num_hiddens))  # scaled as a token embedding is
        mask = key_mask(lengths, tf.shape(X)[1])
        for blk in self.blks:
            X = blk(X, mask)
        return X, lengths


class SpeechDecoder(TransformerDecoder):
    """The Transformer decoder over the subsampled memory, its cross-attention masked past its lengths."""

    def memory(self, enc_outputs, enc_valid_lens):
        return enc_outputs  # (memory, subsampled lengths): the frame lengths are no longer the memory's
