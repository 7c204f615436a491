"""Image captioning as "Show, Attend and Tell" does it: a small CNN pooled to a grid of positions and
an additive-attention GRU decoder over the grid."""
import keras
import tensorflow as tf

from .bahdanau import MemoryAttentionDecoder
from .d2l import Encoder


class ConvBlock(keras.layers.Layer):
    """3x3 convolution with stride 2 and zero padding 1 (no bias: BatchNorm's shift takes its place),
    BatchNorm over channels (its moving statistics in inference; PyTorch's epsilon), ReLU. Channels last."""

    def __init__(self, out_channels, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(out_channels, 3, strides=2, use_bias=False)
        self.norm = keras.layers.BatchNormalization(epsilon=1e-5)

    def call(self, X):
        # Padded by hand on both sides: Keras' "same" pads an even size on the bottom and right only.
        return tf.nn.relu(self.norm(self.conv(tf.pad(X, [[0, 0], [1, 1], [1, 1], [0, 0]]))))


class CaptioningEncoder(Encoder):
    """Images (batch, channels, height, width) -> grid features (batch, positions, num_hiddens), the grid
    read row by row (position y * width + x). An image has no valid length: the encoder takes none."""

    def __init__(self, channels, num_hiddens, num_layers, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.cnn = [ConvBlock(num_hiddens) for _ in range(num_layers)]
        self.pool = keras.layers.AveragePooling2D(2)

    def call(self, X):
        if X.shape[1] != self.channels:  # a Conv2D built for C channels would say it less plainly
            raise ValueError(f"images of {X.shape[1]} channels; the encoder reads {self.channels}")
        X = tf.transpose(X, (0, 2, 3, 1))  # TensorFlow's CPU convolutions take channels last
        for block in self.cnn:
            X = block(X)
        X = self.pool(X)
        return tf.reshape(X, (tf.shape(X)[0], -1, X.shape[-1]))


class GridAttentionDecoder(MemoryAttentionDecoder):
    """Attends over every grid position; the initial state from the mean over the grid."""

    def init_state(self, enc_outputs, *args):
        positions = tf.fill(tf.shape(enc_outputs)[:1], tf.shape(enc_outputs)[1])
        return super().init_state(enc_outputs, positions)
