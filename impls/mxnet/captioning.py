"""Image captioning as "Show, Attend and Tell" does it: a small CNN pooled to a grid of positions and
an additive-attention GRU decoder over the grid."""
from conformance.compat import import_mxnet

mx = import_mxnet()
from mxnet import np  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

from .bahdanau import MemoryAttentionDecoder  # noqa: E402
from .d2l import Encoder  # noqa: E402


class ConvBlock(nn.HybridBlock):
    """3x3 convolution with stride 2 (no bias: BatchNorm's shift takes its place), BatchNorm, ReLU.
    BatchNorm reads its running statistics unless autograd records in training mode: the suite's
    gradients record with train_mode=False."""

    def __init__(self, out_channels, **kwargs):
        super().__init__(**kwargs)
        self.conv = nn.Conv2D(out_channels, 3, strides=2, padding=1, use_bias=False)
        self.norm = nn.BatchNorm(epsilon=1e-5)

    def hybrid_forward(self, F, X):
        return F.npx.relu(self.norm(self.conv(X)))


class CaptioningEncoder(Encoder):
    """Images (batch, channels, height, width) -> grid features (batch, positions, num_hiddens), the grid
    read row by row. An image has no valid length: the encoder takes none."""

    def __init__(self, num_hiddens, num_layers, **kwargs):
        super().__init__(**kwargs)
        self.cnn = nn.HybridSequential()
        for _ in range(num_layers):
            self.cnn.add(ConvBlock(num_hiddens))
        self.pool = nn.AvgPool2D(2)

    def forward(self, X):
        X = self.pool(self.cnn(X))
        return X.reshape(X.shape[0], X.shape[1], -1).swapaxes(1, 2)


class GridAttentionDecoder(MemoryAttentionDecoder):
    """Attends over every grid position; the initial state from the mean over the grid."""

    def init_state(self, enc_outputs, *args):
        positions = np.full((enc_outputs.shape[0],), enc_outputs.shape[1], dtype="int64", ctx=enc_outputs.ctx)
        return super().init_state(enc_outputs, positions)
