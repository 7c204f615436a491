"""RNN, GRU and LSTM encoder-decoders (d2l 10.7) on canonical weights (docs/weights.md).

A layer's state is a tuple: (h,) for an RNN or GRU cell, (h, c) for an LSTM cell; a stack's state is
one such tuple per layer, layer 0 first. Arrays are batch-major: h is (batch, num_hiddens).
"""
from __future__ import annotations

from array_api_compat import array_namespace

from .layers import Params, affine, embedding, gate_blocks, linear, sigmoid


def rnn_cell(p: Params, x, state):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""
    (h,) = state
    xp = array_namespace(x)
    return (xp.tanh(linear(x, p["weight_ih"], p["bias_ih"]) + linear(h, p["weight_hh"], p["bias_hh"])),)


def gru_cell(p: Params, x, state):
    """Rows: reset r, update z, new n. The reset gate scales the recurrent term *after* its matmul,
    bias b_hn included (cuDNN's convention), which is why a GRU keeps two biases."""
    (h,) = state
    xp = array_namespace(x)
    x_r, x_z, x_n = gate_blocks(linear(x, p["weight_ih"], p["bias_ih"]), 3)
    h_r, h_z, h_n = gate_blocks(linear(h, p["weight_hh"], p["bias_hh"]), 3)
    r = sigmoid(x_r + h_r)
    z = sigmoid(x_z + h_z)
    n = xp.tanh(x_n + r * h_n)
    return ((1 - z) * n + z * h,)


def lstm_cell(p: Params, x, state):
    """Rows: input i, forget f, cell g, output o. c' = f c + i g, h' = o tanh(c')."""
    h, c = state
    xp = array_namespace(x)
    i, f, g, o = gate_blocks(linear(x, p["weight_ih"], p["bias_ih"]) + linear(h, p["weight_hh"], p["bias_hh"]), 4)
    c = sigmoid(f) * c + sigmoid(i) * xp.tanh(g)
    return sigmoid(o) * xp.tanh(c), c


CELLS = {"rnn": rnn_cell, "gru": gru_cell, "lstm": lstm_cell}


def zero_state(cell: str, batch: int, num_hiddens: int, num_layers: int, like):
    """The state before the first step: zeros, in the dtype and namespace of `like`."""
    xp = array_namespace(like)
    zeros = xp.zeros((batch, num_hiddens), dtype=like.dtype)
    return tuple((zeros, zeros) if cell == "lstm" else (zeros,) for _ in range(num_layers))


def stack_step(cell: str, p: Params, x, state):
    """One time step through the stack: layer l reads the new h of layer l - 1, layer 0 reads x.
    Returns the top layer's new h and the stack's new state."""
    new_state = []
    for layer, layer_state in enumerate(state):
        layer_state = CELLS[cell](p.scope(str(layer)), x, layer_state)
        new_state.append(layer_state)
        x = layer_state[0]
    return x, tuple(new_state)


class Seq2SeqEncoder:
    """Reads each source up to its valid length only: past it the state is held and the output is 0,
    so the final state is the one at the last valid step and padding reaches nothing.
    Returns (outputs (batch, steps, H), final state)."""

    def __init__(self, cell: str, num_hiddens: int, num_layers: int):
        self.cell, self.num_hiddens, self.num_layers = cell, num_hiddens, num_layers

    def __call__(self, p: Params, X, valid_lens):
        embs = embedding(p["embedding.weight"], X)  # (batch, steps, E)
        xp = array_namespace(embs)
        state = zero_state(self.cell, X.shape[0], self.num_hiddens, self.num_layers, like=embs)
        outputs = []
        for t in range(X.shape[1]):
            top, new_state = stack_step(self.cell, p.scope("rnn"), embs[:, t], state)
            running = xp.asarray(t < valid_lens)[:, None]  # (batch, 1): examples still within their source
            state = tuple(tuple(xp.where(running, new, old) for new, old in zip(*layer)) for layer in zip(new_state, state))
            outputs.append(xp.where(running, top, 0.0))
        return xp.stack(outputs, axis=1), state


class Seq2SeqDecoder:
    """Each step reads [embedding(token), context], the context being the encoder's top-layer final
    h, fixed for the whole decode. The initial state is the encoder's final state.
    State: (context, hidden state of the stack)."""

    def __init__(self, cell: str):
        self.cell = cell

    def init_state(self, p: Params, enc_outputs, valid_lens):
        _, hidden = enc_outputs
        return hidden[-1][0], hidden

    def __call__(self, p: Params, X, state):
        context, hidden = state
        embs = embedding(p["embedding.weight"], X)
        xp = array_namespace(embs)
        outputs = []
        for t in range(X.shape[1]):
            top, hidden = stack_step(self.cell, p.scope("rnn"), xp.concat([embs[:, t], context], axis=-1), hidden)
            outputs.append(top)
        return affine(p, "dense", xp.stack(outputs, axis=1)), (context, hidden)
