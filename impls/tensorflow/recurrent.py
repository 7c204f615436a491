"""RNN / GRU / LSTM sequence-to-sequence (d2l 10.7), reading the source only up to its valid length."""
import keras
import tensorflow as tf

from .d2l import Decoder, Embedding, Encoder

CELLS = {"rnn": keras.layers.SimpleRNNCell, "gru": keras.layers.GRUCell, "lstm": keras.layers.LSTMCell}


class StackedCells(keras.layers.StackedRNNCells):
    """One time step through `num_layers` cells, with dropout on the outputs of every layer but the last
    (torch's nn.GRU(num_layers, dropout)). The state is a list with one entry per layer: [h], or [h, c]."""

    def __init__(self, cell, num_hiddens, num_layers, dropout=0.0, **kwargs):
        super().__init__([CELLS[cell](num_hiddens) for _ in range(num_layers)], **kwargs)
        self.dropout = keras.layers.Dropout(dropout)

    def call(self, inputs, states, training=False):
        new_states = []
        for i, (cell, state) in enumerate(zip(self.cells, states)):
            if i:
                inputs = self.dropout(inputs, training=training)
            inputs, state = cell(inputs, list(state), training=training)
            new_states.append(state)
        return inputs, new_states


def stacked_rnn(cell, num_hiddens, num_layers, dropout=0.0):
    """Runs the stack over a whole sequence: (outputs (batch, steps, num_hiddens), *per-layer states).
    Steps a mask rules out keep the state and output zeros, as packed sequences do in PyTorch."""
    cells = StackedCells(cell, num_hiddens, num_layers, dropout)
    return keras.layers.RNN(cells, return_sequences=True, return_state=True, zero_output_for_mask=True)


def top_layer(hidden_state):
    """The last layer's hidden state h (batch, num_hiddens)."""
    return hidden_state[-1][0]


class Seq2SeqEncoder(Encoder):
    """Outputs (batch, src_steps, num_hiddens), zero past each valid length; state: one [h] or [h, c] per layer."""

    def __init__(self, cell, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = Embedding(vocab_size, embed_size)
        self.rnn = stacked_rnn(cell, num_hiddens, num_layers, dropout)

    def call(self, X, valid_lens):
        embs = self.embedding(X)
        # The mask stops every sequence at its valid length, so padding reaches neither the
        # outputs nor the final state.
        outputs, *state = self.rnn(embs, mask=tf.sequence_mask(valid_lens, tf.shape(X)[1]))
        return outputs, state


class Seq2SeqDecoder(Decoder):
    """Each step sees its token embedding concatenated with a fixed context: the encoder's summary."""

    def __init__(self, cell, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = Embedding(vocab_size, embed_size)
        self.rnn = stacked_rnn(cell, num_hiddens, num_layers, dropout)
        self.dense = keras.layers.Dense(vocab_size)

    def init_state(self, enc_all_outputs, *args):
        _, hidden_state = enc_all_outputs
        # d2l takes enc_outputs[-1], the last *padded* step; the final state stops at the valid length.
        return top_layer(hidden_state), hidden_state

    def call(self, X, state):
        context, hidden_state = state
        embs = self.embedding(X)
        context = tf.repeat(context[:, None], tf.shape(embs)[1], axis=1)
        outputs, *hidden_state = self.rnn(tf.concat([embs, context], -1), initial_state=hidden_state)
        return self.dense(outputs), (state[0], hidden_state)
