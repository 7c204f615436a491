"""The Transformer (d2l 11.7), post-norm, with incremental decoding, on canonical weights
(docs/weights.md). Arrays are batch-major: (batch, steps, H)."""
from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace

from .layers import Params, affine, embedding, key_mask, layer_norm, masked_softmax, positions, relu


def split_heads(X, heads: int):
    """(batch, steps, H) -> (batch, heads, steps, H / heads): head i holds features i*d .. (i+1)*d - 1."""
    xp = array_namespace(X)
    batch, steps, H = X.shape
    return xp.permute_dims(xp.reshape(X, (batch, steps, heads, H // heads)), (0, 2, 1, 3))


def merge_heads(X):
    """(batch, heads, steps, d) -> (batch, steps, heads * d): the heads concatenated back in order."""
    xp = array_namespace(X)
    batch, heads, steps, d = X.shape
    return xp.reshape(xp.permute_dims(X, (0, 2, 1, 3)), (batch, steps, heads * d))


def multi_head_attention(p: Params, queries, K, V, mask, heads: int):
    """W_o(softmax(Q Kᵀ / √d) V) per head, Q = W_q queries + b_q, d = H / heads. K and V come
    already projected (W_k, W_v), as a cache keeps them; `mask` (True: may attend) broadcasts to
    (batch, heads, queries, keys)."""
    xp = array_namespace(queries)
    Q, K, V = (split_heads(X, heads) for X in (affine(p, "W_q", queries), K, V))
    scores = Q @ xp.permute_dims(K, (0, 1, 3, 2)) / math.sqrt(Q.shape[-1])
    return affine(p, "W_o", merge_heads(masked_softmax(scores, mask) @ V))


def add_norm(p: Params, X, Y):
    """norm(X + sublayer(X)), Y being the sublayer's output."""
    return layer_norm(X + Y, p["weight"], p["bias"])


def ffn(p: Params, X):
    return affine(p, "dense2", relu(affine(p, "dense1", X)))


def embed(p: Params, X, start: int):
    """embedding(X) · √H plus the positions start, start + 1, ... (a cached step continues the count)."""
    E = embedding(p["embedding.weight"], X)
    xp = array_namespace(E)
    H = E.shape[-1]
    return E * math.sqrt(H) + xp.asarray(positions(start, X.shape[1], H), dtype=E.dtype)


def causal_mask(num_queries: int, num_past: int) -> np.ndarray:
    """(queries, past + queries): query i stands at position num_past + i and sees keys 0 .. num_past + i."""
    return np.arange(num_past + num_queries) <= (num_past + np.arange(num_queries))[:, None]


class TransformerEncoder:
    """Blocks of self-attention (keys past the valid length masked) and an FFN, each in an AddNorm.
    Returns the memory (batch, steps, H); positions past a valid length are never attended to."""

    def __init__(self, num_layers: int, num_heads: int):
        self.num_layers, self.heads = num_layers, num_heads

    def __call__(self, p: Params, X, valid_lens):
        return self.blocks(p, embed(p, X, start=0), valid_lens)

    def blocks(self, p: Params, X, valid_lens):
        """The blocks over embedded positions X (batch, steps, H)."""
        mask = key_mask(valid_lens, X.shape[1])[:, None, None, :]
        for i in range(self.num_layers):
            block = p.scope(f"blocks.{i}")
            attention = block.scope("attention")
            Y = multi_head_attention(attention, X, affine(attention, "W_k", X), affine(attention, "W_v", X), mask, self.heads)
            X = add_norm(block.scope("norm1"), X, Y)
            X = add_norm(block.scope("norm2"), X, ffn(block.scope("ffn"), X))
        return X


class TransformerDecoder:
    """Blocks of causal self-attention, cross-attention to the memory and an FFN, each in an AddNorm.

    State: (source valid lengths, per block the memory's projected cross-attention keys and values,
    per block the self-attention keys and values of every target position decoded so far). The
    cache's length is the position of the next token; a call with several tokens decodes them as
    one chunk. Every call returns a new state: the one passed in is never modified."""

    def __init__(self, num_layers: int, num_heads: int):
        self.num_layers, self.heads = num_layers, num_heads

    def init_state(self, p: Params, enc_outputs, valid_lens):
        memory, valid_lens = self.memory(enc_outputs, valid_lens)
        xp = array_namespace(memory)
        cross = tuple((affine(a, "W_k", memory), affine(a, "W_v", memory))
                      for a in (p.scope(f"blocks.{i}.cross_attention") for i in range(self.num_layers)))
        empty = xp.zeros((memory.shape[0], 0, memory.shape[-1]), dtype=memory.dtype)  # no position decoded yet
        return np.array(valid_lens), cross, tuple((empty, empty) for _ in range(self.num_layers))

    def memory(self, enc_outputs, valid_lens):
        """(memory, its valid lengths): a token encoder's outputs, one position per source step."""
        return enc_outputs, valid_lens

    def __call__(self, p: Params, X, state):
        valid_lens, cross, cache = state
        num_past = cache[0][0].shape[1]
        X = embed(p, X, start=num_past)
        xp = array_namespace(X)
        causal = causal_mask(X.shape[1], num_past)
        source = key_mask(valid_lens, cross[0][0].shape[1])[:, None, None, :]
        new_cache = []
        for i, ((K_src, V_src), (K_past, V_past)) in enumerate(zip(cross, cache)):
            block = p.scope(f"blocks.{i}")
            attention = block.scope("self_attention")
            K = xp.concat([K_past, affine(attention, "W_k", X)], axis=1)  # keys of positions 0 .. num_past + steps - 1
            V = xp.concat([V_past, affine(attention, "W_v", X)], axis=1)
            Y = add_norm(block.scope("norm1"), X, multi_head_attention(attention, X, K, V, causal, self.heads))
            Z = add_norm(block.scope("norm2"), Y, multi_head_attention(block.scope("cross_attention"), Y, K_src, V_src, source, self.heads))
            X = add_norm(block.scope("norm3"), Z, ffn(block.scope("ffn"), Z))
            new_cache.append((K, V))
        return affine(p, "dense", X), (valid_lens, cross, tuple(new_cache))
