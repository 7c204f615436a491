"""Speech recognition as Speech2Text does it: feature frames subsampled by two stride-2 convolutions,
a Transformer encoder over the subsampled positions, and the Transformer decoder with its cache."""
import math

import torch
from torch import nn
from torch.nn import functional as F

from .. import conv_lengths
from .attention import key_mask
from .d2l import Encoder
from .transformer import PositionalEncoding, TransformerDecoder, TransformerEncoderBlock


class ConvSubsampling(nn.ModuleList):
    """Convolutions over time (kernel 3, stride 2, padding 1), each followed by ReLU. Frames past each
    example's length are zeroed before each, so a padded example reads what it reads alone."""

    def __init__(self, num_features, num_hiddens, convolutions=2):
        super().__init__(nn.Conv1d(num_features if i == 0 else num_hiddens, num_hiddens, 3, stride=2, padding=1)
                         for i in range(convolutions))

    def forward(self, X, valid_lens):
        """X (batch, frames, features) -> ((batch, positions, num_hiddens), lengths in positions)."""
        X = X.transpose(1, 2)  # Conv1d reads (batch, channels, time)
        for conv in self:
            within = torch.arange(X.shape[2], device=X.device) < valid_lens[:, None]
            X = F.relu(conv(X.masked_fill(~within[:, None, :], 0)))
            valid_lens = conv_lengths(valid_lens)
        return X.transpose(1, 2), valid_lens


class SpeechEncoder(Encoder):
    """Returns (memory (batch, positions, num_hiddens), its valid lengths): positions past a length are
    never attended to."""

    def __init__(self, num_features, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.subsampling = ConvSubsampling(num_features, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = nn.ModuleList(
            TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout) for _ in range(num_blks)
        )

    def forward(self, X, valid_lens):
        X, lengths = self.subsampling(X, valid_lens)
        X = self.pos_encoding(X * math.sqrt(self.num_hiddens))  # scaled as a token embedding is
        mask = key_mask(lengths, X.shape[1])
        for blk in self.blks:
            X = blk(X, mask)
        return X, lengths


class SpeechDecoder(TransformerDecoder):
    """The Transformer decoder over the subsampled memory, its cross-attention masked past its lengths."""

    def memory(self, enc_outputs, enc_valid_lens):
        return enc_outputs  # (memory, subsampled lengths): the frame lengths are no longer the memory's
