"""Keras 2 (tf_keras) Encoder-Decoders written as d2l's TensorFlow chapters write them (10.7, 11.4):
time-major recurrent stacks, `call(self, X, *args, **kwargs)` handing `training` on by hand, state
lists, Python loops over time steps. They differ from d2l's only where d2l's are wrong:

- the encoder masks each source by its valid length, where d2l's reads the padding: a time-major
  RNN takes a time-major (steps, batch) mask, and carries the last valid output over the padded
  steps, so d2l's context `enc_output[-1]` becomes the output at each valid length;
- the model passes its caller's `training` on, where d2l's EncoderDecoder always passes True.

tf_keras' Embedding raises on CPU for an id < 0 as for one >= vocab size (Keras 3's wraps negative
ids around), so d2l's plain Embedding is kept; a GPU gather would return zeros for both instead.

    pip install --no-deps tf_keras==2.21.0   # beside tensorflow-cpu; its metadata would pull `tensorflow`
    pytest --pyargs conformance --impl=examples.keras2_d2l:make_model --family=rnn,gru,lstm,bahdanau

Verdict: every contract passes for the four families. tests/broken/keras2_models.py puts d2l's own
bugs back (an encoder that reads padding, a context from the current state, training always on),
each caught by exactly the contracts that name it.
"""
import contextlib

import tensorflow as tf
import tf_keras

from conformance import Unsupported

FAMILY = "gru"  # rnn, lstm and bahdanau pass too (tests/test_keras2.py); transformer and mixed are declined
EXPECTED = {"make_model": set()}  # factory: contracts that fail (tests/test_examples.py checks these)


class Encoder(tf_keras.layers.Layer):
    def call(self, X, *args, **kwargs):
        raise NotImplementedError


class Decoder(tf_keras.layers.Layer):
    def init_state(self, enc_all_outputs, *args):
        raise NotImplementedError

    def call(self, X, state, **kwargs):
        raise NotImplementedError


class EncoderDecoder(tf_keras.Model):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder

    def call(self, enc_X, dec_X, *args, **kwargs):
        enc_all_outputs = self.encoder(enc_X, *args, **kwargs)
        dec_state = self.decoder.init_state(enc_all_outputs, *args)
        return self.decoder(dec_X, dec_state, **kwargs)[0]


CELLS = {"rnn": tf_keras.layers.SimpleRNNCell, "gru": tf_keras.layers.GRUCell, "lstm": tf_keras.layers.LSTMCell}


class MultilayerRNN(tf_keras.layers.Layer):
    """d2l's GRU (10.3), any cell: time-major in and out; the state is one entry per layer ([h, c] for an LSTM)."""

    def __init__(self, cell, num_hiddens, num_layers, dropout=0, **kwargs):
        super().__init__(**kwargs)
        cells = [CELLS[cell](num_hiddens, dropout=dropout) for _ in range(num_layers)]
        self.rnn = tf_keras.layers.RNN(cells, return_sequences=True, return_state=True, time_major=True)

    def call(self, X, state=None, **kwargs):
        outputs, *state = self.rnn(X, state, **kwargs)
        return outputs, state


def time_major_mask(valid_lens, num_steps):
    """(num_steps, batch_size): True up to each valid length."""
    return tf.transpose(tf.sequence_mask(valid_lens, num_steps))


class Seq2SeqEncoder(Encoder):
    def __init__(self, cell, vocab_size, embed_size, num_hiddens, num_layers, dropout=0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = tf_keras.layers.Embedding(vocab_size, embed_size)
        self.rnn = MultilayerRNN(cell, num_hiddens, num_layers, dropout)

    def call(self, X, valid_lens, **kwargs):
        embs = self.embedding(tf.transpose(X))  # (num_steps, batch_size, embed_size)
        return self.rnn(embs, mask=time_major_mask(valid_lens, tf.shape(X)[1]), **kwargs)


class Seq2SeqDecoder(Decoder):
    def __init__(self, cell, vocab_size, embed_size, num_hiddens, num_layers, dropout=0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = tf_keras.layers.Embedding(vocab_size, embed_size)
        self.rnn = MultilayerRNN(cell, num_hiddens, num_layers, dropout)
        self.dense = tf_keras.layers.Dense(vocab_size)

    def init_state(self, enc_all_outputs, *args):
        return enc_all_outputs

    def call(self, X, state, **kwargs):
        embs = self.embedding(tf.transpose(X))
        enc_output, hidden_state = state
        context = tf.tile(enc_output[-1][None], (tf.shape(embs)[0], 1, 1))  # the top layer's last valid output
        outputs, hidden_state = self.rnn(tf.concat((embs, context), -1), hidden_state, **kwargs)
        return tf.transpose(self.dense(outputs), (1, 0, 2)), [enc_output, hidden_state]


def masked_softmax(X, valid_lens):
    """Softmax over the last axis of X (batch_size, queries, keys), keys past each valid length weighted 0."""
    mask = tf.sequence_mask(valid_lens, tf.shape(X)[-1])[:, None, :]
    return tf.nn.softmax(tf.where(mask, X, tf.constant(-1e6, X.dtype)), axis=-1)


class AdditiveAttention(tf_keras.layers.Layer):
    def __init__(self, num_hiddens, dropout, **kwargs):
        super().__init__(**kwargs)
        self.W_k = tf_keras.layers.Dense(num_hiddens, use_bias=False)
        self.W_q = tf_keras.layers.Dense(num_hiddens, use_bias=False)
        self.w_v = tf_keras.layers.Dense(1, use_bias=False)
        self.dropout = tf_keras.layers.Dropout(dropout)

    def call(self, queries, keys, values, valid_lens, **kwargs):
        features = tf.nn.tanh(self.W_q(queries)[:, :, None] + self.W_k(keys)[:, None])
        scores = tf.squeeze(self.w_v(features), -1)
        return tf.matmul(self.dropout(masked_softmax(scores, valid_lens), **kwargs), values)


class Seq2SeqAttentionDecoder(Decoder):
    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0, **kwargs):
        super().__init__(**kwargs)
        self.attention = AdditiveAttention(num_hiddens, dropout)
        self.embedding = tf_keras.layers.Embedding(vocab_size, embed_size)
        cells = [tf_keras.layers.GRUCell(num_hiddens, dropout=dropout) for _ in range(num_layers)]
        self.rnn = tf_keras.layers.RNN(cells, return_sequences=True, return_state=True)
        self.dense = tf_keras.layers.Dense(vocab_size)

    def init_state(self, enc_outputs, enc_valid_lens):
        outputs, hidden_state = enc_outputs
        return tf.transpose(outputs, (1, 0, 2)), hidden_state, enc_valid_lens

    def call(self, X, state, **kwargs):
        enc_outputs, hidden_state, enc_valid_lens = state
        outputs = []
        for x in tf.transpose(self.embedding(X), (1, 0, 2)):  # one step at a time: the query is the last state
            query = hidden_state[-1][:, None]
            context = self.attention(query, enc_outputs, enc_outputs, enc_valid_lens, **kwargs)
            out, *hidden_state = self.rnn(tf.concat((context, x[:, None]), -1), hidden_state, **kwargs)
            outputs.append(out)
        return self.dense(tf.concat(outputs, 1)), [enc_outputs, hidden_state, enc_valid_lens]


CELLS_OF_FAMILY = {"rnn": "rnn", "gru": "gru", "lstm": "lstm", "bahdanau": "gru"}  # the families covered


@contextlib.contextmanager
def floatx(dtype):
    """Keras 2 layers take their dtype from floatx when they are constructed; the previous one is restored after."""
    previous = tf_keras.backend.floatx()
    tf_keras.backend.set_floatx(dtype)
    try:
        yield
    finally:
        tf_keras.backend.set_floatx(previous)


def make_model(spec):
    if spec.family not in CELLS_OF_FAMILY:
        raise Unsupported(f"no Keras 2 port of d2l's {spec.family}")
    s, cell = spec, CELLS_OF_FAMILY[spec.family]
    with floatx(s.dtype):
        encoder = Seq2SeqEncoder(cell, s.src_vocab, s.embed_size, s.num_hiddens, s.num_layers, s.dropout)
        if s.family == "bahdanau":
            decoder = Seq2SeqAttentionDecoder(s.tgt_vocab, s.embed_size, s.num_hiddens, s.num_layers, s.dropout)
        else:
            decoder = Seq2SeqDecoder(cell, s.tgt_vocab, s.embed_size, s.num_hiddens, s.num_layers, s.dropout)
        model = EncoderDecoder(encoder, decoder)
        one = tf.zeros((1, 1), tf.int32)
        model(one, one, tf.ones(1, tf.int32), training=False)  # Keras creates weights on the first call
    return model
