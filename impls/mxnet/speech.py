"""Speech recognition as Speech2Text does it: feature frames subsampled by two stride-2 convolutions,
a Transformer encoder over the subsampled positions, and the Transformer decoder with its cache."""
import math

from conformance.compat import import_mxnet

from .. import conv_lengths

mx = import_mxnet()
from mxnet import np  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

from .attention import key_mask  # noqa: E402
from .d2l import Encoder  # noqa: E402
from .transformer import PositionalEncoding, TransformerDecoder, TransformerEncoderBlock  # noqa: E402


def subsampled(valid_lens):
    """The lengths after one convolution, by impls.conv_lengths on the host: MXNet 1.9.1's numpy
    interface has no integer floor division."""
    return np.array(conv_lengths(valid_lens.asnumpy()), dtype=valid_lens.dtype, ctx=valid_lens.ctx)


class ConvSubsampling(nn.Block):
    """Convolutions over time (kernel 3, stride 2, padding 1), each followed by ReLU. Frames past each
    example's length are zeroed before each, so a padded example reads what it reads alone."""

    def __init__(self, num_hiddens, convolutions=2, **kwargs):
        super().__init__(**kwargs)
        self.convs = nn.HybridSequential()  # a container: each convolution is its own hybridized graph
        for _ in range(convolutions):
            self.convs.add(nn.Conv1D(num_hiddens, 3, strides=2, padding=1, activation="relu"))

    def forward(self, X, valid_lens):
        """X (batch, frames, features) -> ((batch, positions, num_hiddens), lengths in positions)."""
        X = X.swapaxes(1, 2)  # Conv1D reads (batch, channels, time)
        for conv in self.convs:
            within = key_mask(valid_lens, X.shape[2]).reshape(X.shape[0], 1, -1)
            # An array, not a scalar 0: MXNet 1.9.1's np.where(cond, x, scalar) passes no gradient to x.
            X = conv(np.where(within, X, np.zeros_like(X)))
            valid_lens = subsampled(valid_lens)
        return X.swapaxes(1, 2), valid_lens


class SpeechEncoder(Encoder):
    """Returns (memory (batch, positions, num_hiddens), its valid lengths): positions past a length are
    never attended to."""

    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len, **kwargs):
        super().__init__(**kwargs)
        self.num_hiddens = num_hiddens
        self.subsampling = ConvSubsampling(num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = nn.HybridSequential()  # a container: each block is called (and hybridized) on its own
        for _ in range(num_blks):
            self.blks.add(TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout))

    def forward(self, X, valid_lens):
        X, lengths = self.subsampling(X, valid_lens)
        X = self.pos_encoding(X * math.sqrt(self.num_hiddens))  # scaled as a token embedding is
        mask = key_mask(lengths, X.shape[1]).reshape(X.shape[0], 1, 1, -1)
        for blk in self.blks:
            X = blk(X, mask)
        return X, lengths


class SpeechDecoder(TransformerDecoder):
    """The Transformer decoder over the subsampled memory, its cross-attention masked past its lengths."""

    def memory(self, enc_outputs, enc_valid_lens):
        return enc_outputs  # (memory, subsampled lengths): the frame lengths are no longer the memory's
