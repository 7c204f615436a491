"""The d2l Encoder-Decoder interface, as in "Dive into Deep Learning", chapter 10.6 (TensorFlow)."""
import keras
import tensorflow as tf


class Layer(keras.layers.Layer):
    """A layer made of sublayers, each built on its first call. Keras' default build would first run the
    whole call symbolically to build them, most of a reference's construction time (measured: 1.4 s of
    CPU for the Transformer, 0.4 s without)."""

    def build(self, *shapes, **kwargs):
        pass


class Encoder(Layer):
    def call(self, X, *args):
        raise NotImplementedError


class Decoder(Layer):
    def init_state(self, enc_all_outputs, *args):
        raise NotImplementedError

    def call(self, X, state):
        raise NotImplementedError


class EncoderDecoder(keras.Model):
    # Its calls trace as tf.function graphs (no Python side effects, no eager-only code): the suite's
    # TensorFlow bridge may run them so (conformance/bridges/tensorflow_bridge.py).
    traceable = True

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder

    def build(self, *shapes):
        pass  # the encoder and decoder build on their first call; Keras cannot trace `*args` to do it

    def call(self, enc_X, dec_X, *args, training=None):
        enc_all_outputs = self.encoder(enc_X, *args, training=training)
        dec_state = self.decoder.init_state(enc_all_outputs, *args)
        return self.decoder(dec_X, dec_state, training=training)[0]


class Embedding(keras.layers.Embedding):
    """A token id must lie in [0, vocab_size): Keras' `take` wraps negative ids around like numpy,
    and a GPU gather returns zeros past the table, so both would pass silently without this check."""

    def call(self, inputs):
        tf.debugging.assert_non_negative(inputs, message="negative token id")
        tf.debugging.assert_less(inputs, tf.cast(self.input_dim, inputs.dtype), message="token id >= vocab size")
        return super().call(inputs)
