"""RNN / GRU / LSTM sequence-to-sequence (d2l 10.7), reading the source only up to its valid length.

The cells are written out instead of using `gluon.rnn.GRU` & co. because in MXNet 1.9.1 the fused
RNN operator (1) ignores `use_sequence_length` on CPU, so padding would leak into the final state,
and (2) applies its inter-layer dropout whenever autograd records, even with train_mode=False.
"""
from conformance.compat import import_mxnet

mx = import_mxnet()
from mxnet import np  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

from .d2l import Decoder, Encoder, TokenEmbedding  # noqa: E402


def dense(units):
    return nn.Dense(units, flatten=False)


class RNNCell(nn.HybridBlock):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""

    num_states = 1

    def __init__(self, num_hiddens, **kwargs):
        super().__init__(**kwargs)
        self.i2h, self.h2h = dense(num_hiddens), dense(num_hiddens)

    def hybrid_forward(self, F, x, h):
        h = F.np.tanh(self.i2h(x) + self.h2h(h))
        return h, (h,)


class GRUCell(nn.HybridBlock):
    """r, z = sigmoid(...); n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); h' = (1 - z) n + z h.

    The variant of torch.nn.GRU and cuDNN: the reset gate multiplies the projected state.
    """

    num_states = 1

    def __init__(self, num_hiddens, **kwargs):
        super().__init__(**kwargs)
        self.i2h, self.h2h = dense(3 * num_hiddens), dense(3 * num_hiddens)

    def hybrid_forward(self, F, x, h):
        x_r, x_z, x_n = F.np.split(self.i2h(x), 3, axis=-1)
        h_r, h_z, h_n = F.np.split(self.h2h(h), 3, axis=-1)
        r, z = F.npx.sigmoid(x_r + h_r), F.npx.sigmoid(x_z + h_z)
        n = F.np.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h
        return h, (h,)


class LSTMCell(nn.HybridBlock):
    """i, f, o = sigmoid(...), g = tanh(...); c' = f c + i g; h' = o tanh(c')."""

    num_states = 2

    def __init__(self, num_hiddens, **kwargs):
        super().__init__(**kwargs)
        self.i2h, self.h2h = dense(4 * num_hiddens), dense(4 * num_hiddens)

    def hybrid_forward(self, F, x, h, c):
        i, f, g, o = F.np.split(self.i2h(x) + self.h2h(h), 4, axis=-1)
        c = F.npx.sigmoid(f) * c + F.npx.sigmoid(i) * F.np.tanh(g)
        h = F.npx.sigmoid(o) * F.np.tanh(c)
        return h, (h, c)


CELLS = {"rnn": RNNCell, "gru": GRUCell, "lstm": LSTMCell}


class StackedCells(nn.HybridBlock):
    """One time step through `num_layers` cells, with dropout between layers as in torch.nn.GRU.

    The state is laid out as torch's: H (num_layers, batch, num_hiddens), or (H, C) for an LSTM.
    Hybridized, a step is one cached graph instead of dozens of operator calls.
    """

    def __init__(self, cell, num_hiddens, num_layers, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_hiddens, self.num_layers = num_hiddens, num_layers
        self.num_states = CELLS[cell].num_states
        self.cells = nn.HybridSequential()
        for _ in range(num_layers):
            self.cells.add(CELLS[cell](num_hiddens))
        self.dropout = nn.Dropout(dropout)

    def hybrid_forward(self, F, x, *state):
        per_layer = []
        for layer, cell in enumerate(self.cells):
            x, layer_state = cell(x, *(s[layer] for s in state))
            per_layer.append(layer_state)
            if layer < self.num_layers - 1:
                x = self.dropout(x)
        return (x, *(F.np.stack(s, axis=0) for s in zip(*per_layer)))

    def step(self, x, state):
        """(x (batch, inputs), state) -> (top-layer output (batch, num_hiddens), new state)."""
        out, *state = self(x, *self.as_tuple(state))
        return out, self.from_tuple(state)

    def begin_state(self, batch_size, dtype, ctx):
        zeros = np.zeros((self.num_layers, batch_size, self.num_hiddens), dtype=dtype, ctx=ctx)
        return self.from_tuple([zeros] * self.num_states)

    def as_tuple(self, state):
        return tuple(state) if self.num_states > 1 else (state,)

    def from_tuple(self, states):
        return tuple(states) if self.num_states > 1 else states[0]


def where(running, new, old):
    """`new` for the examples still running, `old` for the others; a state may be an (h, c) tuple.

    Both sides are arrays: MXNet 1.9.1's np.where(cond, x, scalar) passes no gradient to x.
    """
    if isinstance(new, tuple):
        return tuple(where(running, n, o) for n, o in zip(new, old))
    return np.where(running, new, old)


def top_layer(hidden_state):
    """The last layer's hidden state (batch, num_hiddens); an LSTM state is (h, c)."""
    h = hidden_state[0] if isinstance(hidden_state, tuple) else hidden_state
    return h[-1]


class Seq2SeqEncoder(Encoder):
    """Outputs are time-major as in d2l: (src_steps, batch, num_hiddens); zero past each valid length."""

    def __init__(self, cell, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = TokenEmbedding(vocab_size, embed_size)
        self.rnn = StackedCells(cell, num_hiddens, num_layers, dropout)

    def forward(self, X, valid_lens):
        embs = self.embedding(X.T)
        state = self.rnn.begin_state(X.shape[0], embs.dtype, embs.ctx)
        outputs = []
        for t, x in enumerate(embs):
            # Past its valid length an example keeps its state and outputs zeros: padding
            # reaches neither the outputs nor the final state.
            running = (t < valid_lens).reshape(-1, 1)
            out, new_state = self.rnn.step(x, state)
            state = where(running, new_state, state)
            outputs.append(where(running, out, np.zeros_like(out)))
        return np.stack(outputs), state


class Seq2SeqDecoder(Decoder):
    """Each step sees its token embedding concatenated with a fixed context: the encoder's summary."""

    def __init__(self, cell, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = TokenEmbedding(vocab_size, embed_size)
        self.rnn = StackedCells(cell, num_hiddens, num_layers, dropout)
        self.dense = dense(vocab_size)

    def init_state(self, enc_all_outputs, *args):
        _, hidden_state = enc_all_outputs
        # d2l takes enc_outputs[-1], the last *padded* step; the final state stops at the valid length.
        return top_layer(hidden_state), hidden_state

    def forward(self, X, state):
        context, hidden_state = state
        embs = self.embedding(X.T)
        context = np.broadcast_to(context, (embs.shape[0], *context.shape))
        outputs = []
        for x in np.concatenate((embs, context), -1):
            out, hidden_state = self.rnn.step(x, hidden_state)
            outputs.append(out)
        return self.dense(np.stack(outputs)).swapaxes(0, 1), (state[0], hidden_state)
