"""A GRU decoder with additive (Bahdanau) attention (d2l 11.4), over a recurrent encoder (bahdanau)
or a Transformer encoder (mixed), on canonical weights (docs/weights.md)."""
from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace

from .layers import Params, affine, embedding, key_mask, linear, masked_softmax
from .recurrent import stack_step


def additive_attention(p: Params, query, keys, memory, valid_lens):
    """score_j = w_v · tanh(W_q q + W_k m_j) for j < valid length; context = Σ_j softmax(score)_j m_j.
    `keys` holds W_k m_j, projected once per source. query (batch, H) -> context (batch, H)."""
    xp = array_namespace(query)
    features = xp.tanh(linear(query, p["W_q.weight"])[:, None, :] + keys)  # (batch, steps, H)
    scores = linear(features, p["w_v.weight"])[..., 0]  # (batch, steps)
    weights = masked_softmax(scores, key_mask(valid_lens, scores.shape[1]))
    return (weights[:, None, :] @ memory)[:, 0]


class AttentionDecoder:
    """Before each step, the top layer's h queries the memory (the encoder outputs); the GRU stack
    then reads [context, embedding(token)], context first. The initial state is the encoder's final state.
    State: (memory (batch, steps, H), its projected keys, source valid lengths, hidden state)."""

    def memory_state(self, p: Params, memory, valid_lens):
        """What the whole decode reads, computed once per source."""
        return memory, linear(memory, p["attention.W_k.weight"]), np.array(valid_lens)

    def init_state(self, p: Params, enc_outputs, valid_lens):
        memory, hidden = enc_outputs  # a recurrent encoder's (outputs, final state)
        return (*self.memory_state(p, memory, valid_lens), hidden)

    def __call__(self, p: Params, X, state):
        memory, keys, valid_lens, hidden = state
        embs = embedding(p["embedding.weight"], X)
        xp = array_namespace(embs)
        outputs = []
        for t in range(X.shape[1]):
            context = additive_attention(p.scope("attention"), hidden[-1][0], keys, memory, valid_lens)
            top, hidden = stack_step("gru", p.scope("rnn"), xp.concat([context, embs[:, t]], axis=-1), hidden)
            outputs.append(top)
        return affine(p, "dense", xp.stack(outputs, axis=1)), (memory, keys, valid_lens, hidden)


class MemoryAttentionDecoder(AttentionDecoder):
    """The same decoder over a Transformer encoder (mixed), which has no final state to start from:
    h0 = tanh(init_hidden(mean of the encoder outputs over the valid positions)), cut into
    num_layers blocks of H, layer 0 first."""

    def __init__(self, num_layers: int):
        self.num_layers = num_layers

    def init_state(self, p: Params, memory, valid_lens):
        xp = array_namespace(memory)
        valid = xp.asarray(key_mask(valid_lens, memory.shape[1]))[..., None]  # (batch, steps, 1)
        lengths = xp.asarray(np.asarray(valid_lens)[:, None], dtype=memory.dtype)
        mean = xp.sum(xp.where(valid, memory, 0.0), axis=1) / lengths
        h0 = xp.tanh(affine(p, "init_hidden", mean))  # (batch, num_layers * H)
        H = memory.shape[-1]
        hidden = tuple((h0[:, layer * H : (layer + 1) * H],) for layer in range(self.num_layers))
        return (*self.memory_state(p, memory, valid_lens), hidden)
