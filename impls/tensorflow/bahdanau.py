"""GRU decoder with additive (Bahdanau) attention (d2l 11.4), over a recurrent or a Transformer encoder."""
import keras
import tensorflow as tf

from .attention import AdditiveAttention
from .d2l import Decoder, Embedding
from .recurrent import StackedCells


class AttentionDecoder(Decoder):
    """At every step the previous top-layer hidden state queries the encoder outputs (the memory)."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.attention = AdditiveAttention(num_hiddens, dropout)
        self.embedding = Embedding(vocab_size, embed_size)
        self.rnn = StackedCells("gru", num_hiddens, num_layers, dropout)
        self.dense = keras.layers.Dense(vocab_size)

    def memory_state(self, memory, valid_lens):
        """(memory, its projected keys, valid-key mask): fixed for the whole decode, so computed once."""
        return memory, self.attention.project_keys(memory), tf.sequence_mask(valid_lens, tf.shape(memory)[1])

    def init_state(self, enc_outputs, enc_valid_lens):
        outputs, hidden_state = enc_outputs  # a recurrent encoder's (outputs, final state)
        return (*self.memory_state(outputs, enc_valid_lens), hidden_state)

    def call(self, X, state):
        memory, keys, mask, hidden_state = state

        def step(previous, x):
            _, hidden_state = previous
            context = self.attention(hidden_state[-1][0], keys, memory, mask)
            return self.rnn(tf.concat([context, x], -1), hidden_state)

        # tf.scan over time-major steps, not a Python loop: tf.function cannot unroll an unknown number
        # of steps. The carry is (top-layer output, per-layer state lists as the cells return them).
        start = (tf.zeros_like(hidden_state[-1][0]), [list(layer) for layer in hidden_state])
        outputs, hidden_states = tf.scan(step, tf.transpose(self.embedding(X), (1, 0, 2)), initializer=start)
        hidden_state = tf.nest.map_structure(lambda h: h[-1], hidden_states)  # scan stacks every step's state
        return self.dense(tf.transpose(outputs, (1, 0, 2))), (memory, keys, mask, hidden_state)


class MemoryAttentionDecoder(AttentionDecoder):
    """The same decoder over a Transformer encoder, which has no final state: the initial hidden
    state is a projection of the mean encoder output over the valid positions."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0, **kwargs):
        super().__init__(vocab_size, embed_size, num_hiddens, num_layers, dropout, **kwargs)
        self.num_layers = num_layers
        self.init_hidden = keras.layers.Dense(num_layers * num_hiddens)

    def init_state(self, enc_outputs, enc_valid_lens):
        memory, keys, mask = self.memory_state(enc_outputs, enc_valid_lens)
        valid = tf.cast(mask, memory.dtype)[..., None]
        mean = tf.reduce_sum(memory * valid, 1) / tf.reduce_sum(valid, 1)
        hidden = tf.split(tf.tanh(self.init_hidden(mean)), self.num_layers, axis=-1)
        return memory, keys, mask, [[h] for h in hidden]
