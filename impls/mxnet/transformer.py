"""Transformer (d2l 11.7) with incremental decoding: a key/value cache and per-step positions."""
import math

import numpy as onp

from conformance.compat import import_mxnet

mx = import_mxnet()
from mxnet import np  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

from .attention import MultiHeadAttention, causal_mask, key_mask, split_heads  # noqa: E402
from .d2l import Decoder, Encoder, TokenEmbedding  # noqa: E402


class PositionalEncoding(nn.Block):
    """P[i, 2j] = sin(i / 10000^(2j/d)), P[i, 2j+1] = cos(...); `start` offsets a cached step."""

    def __init__(self, num_hiddens, dropout, max_len, **kwargs):
        super().__init__(**kwargs)
        self.dropout = nn.Dropout(dropout)
        pos = onp.arange(max_len, dtype=onp.float64)[:, None]
        angles = pos / 10000 ** (onp.arange(0, num_hiddens, 2, dtype=onp.float64) / num_hiddens)
        P = onp.zeros((max_len, num_hiddens))
        P[:, 0::2], P[:, 1::2] = onp.sin(angles), onp.cos(angles)
        self.P = np.array(P, dtype="float64")  # a constant, not a parameter; cast to X's dtype on use

    def forward(self, X, start=0):
        P = self.P[start : start + X.shape[1]].as_in_ctx(X.ctx).astype(X.dtype, copy=False)
        return self.dropout(X + P)


class PositionWiseFFN(nn.HybridSequential):
    def __init__(self, num_hiddens, ffn_num_hiddens, **kwargs):
        super().__init__(**kwargs)
        self.add(nn.Dense(ffn_num_hiddens, activation="relu", flatten=False), nn.Dense(num_hiddens, flatten=False))


class AddNorm(nn.HybridBlock):
    def __init__(self, num_hiddens, dropout, **kwargs):
        super().__init__(**kwargs)
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(in_channels=num_hiddens)

    def hybrid_forward(self, F, X, Y):
        return self.ln(self.dropout(Y) + X)


class SelfAttention(MultiHeadAttention):
    """Queries, keys and values from one fused projection; new keys/values extend the cache `past`."""

    def __init__(self, num_hiddens, num_heads, dropout=0.0, **kwargs):
        super().__init__(num_hiddens, num_heads, dropout, **kwargs)
        self.W_qkv = nn.Dense(3 * num_hiddens, flatten=False)

    def hybrid_forward(self, F, X, mask, past_k=None, past_v=None):
        qkv, d = self.W_qkv(X), self.num_hiddens
        # Slices, not np.split: MXNet 1.9.1's split along the last axis costs ~3x as much here.
        q, k, v = (split_heads(F, qkv[:, :, i * d : (i + 1) * d], self.num_heads) for i in range(3))
        if past_k is not None:
            k, v = F.np.concatenate((past_k, k), axis=2), F.np.concatenate((past_v, v), axis=2)
        return self.attend(F, q, k, v, mask), k, v


class CrossAttention(MultiHeadAttention):
    """Queries from the decoder; keys/values from the encoder outputs, projected once per source."""

    def __init__(self, num_hiddens, num_heads, dropout=0.0, **kwargs):
        super().__init__(num_hiddens, num_heads, dropout, **kwargs)
        self.W_q = nn.Dense(num_hiddens, flatten=False)
        self.W_kv = nn.Dense(2 * num_hiddens, flatten=False)

    def project_kv(self, memory):
        kv, d = self.W_kv(memory), self.num_hiddens
        return tuple(split_heads(mx.nd, kv[:, :, i * d : (i + 1) * d], self.num_heads) for i in range(2))

    def hybrid_forward(self, F, X, k, v, mask):
        return self.attend(F, split_heads(F, self.W_q(X), self.num_heads), k, v, mask)


class TransformerEncoderBlock(nn.HybridBlock):
    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout, **kwargs):
        super().__init__(**kwargs)
        self.attention = SelfAttention(num_hiddens, num_heads, dropout)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens)
        self.addnorm2 = AddNorm(num_hiddens, dropout)

    def hybrid_forward(self, F, X, mask):
        Y = self.addnorm1(X, self.attention(X, mask)[0])
        return self.addnorm2(Y, self.ffn(Y))


class TransformerEncoder(Encoder):
    """Outputs (batch, src_steps, num_hiddens); positions past a valid length are never attended to."""

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len, **kwargs):
        super().__init__(**kwargs)
        self.num_hiddens = num_hiddens
        self.embedding = TokenEmbedding(vocab_size, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = nn.HybridSequential()  # a container: each block is called (and hybridized) on its own
        for _ in range(num_blks):
            self.blks.add(TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout))

    def forward(self, X, valid_lens):
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens))
        mask = key_mask(valid_lens, X.shape[1]).reshape(X.shape[0], 1, 1, -1)
        for blk in self.blks:
            X = blk(X, mask)
        return X


class TransformerDecoderBlock(nn.HybridBlock):
    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout, **kwargs):
        super().__init__(**kwargs)
        self.self_attention = SelfAttention(num_hiddens, num_heads, dropout)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.cross_attention = CrossAttention(num_hiddens, num_heads, dropout)
        self.addnorm2 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens)
        self.addnorm3 = AddNorm(num_hiddens, dropout)

    def hybrid_forward(self, F, X, past_k, past_v, cross_k, cross_v, enc_mask, mask):
        Y, k, v = self.self_attention(X, mask, past_k, past_v)
        Y = self.addnorm1(X, Y)
        Z = self.addnorm2(Y, self.cross_attention(Y, cross_k, cross_v, enc_mask))
        return self.addnorm3(Z, self.ffn(Z)), k, v


class TransformerDecoder(Decoder):
    """State: (source key mask, per-block cross-attention keys/values, per-block self-attention cache).

    The cache length is the number of tokens decoded so far, and so the position of the next one.
    Every call returns a new state; the one passed in is never modified.
    """

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len, **kwargs):
        super().__init__(**kwargs)
        self.num_hiddens, self.num_heads = num_hiddens, num_heads
        self.embedding = TokenEmbedding(vocab_size, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = nn.HybridSequential()
        for _ in range(num_blks):
            self.blks.add(TransformerDecoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout))
        self.dense = nn.Dense(vocab_size, flatten=False)

    def memory(self, enc_outputs, enc_valid_lens):
        """(memory, its valid lengths): a token encoder's outputs, one position per source step."""
        return enc_outputs, enc_valid_lens

    def init_state(self, enc_outputs, enc_valid_lens):
        memory, lengths = self.memory(enc_outputs, enc_valid_lens)
        batch_size, num_keys, _ = memory.shape
        enc_mask = key_mask(lengths, num_keys).reshape(batch_size, 1, 1, num_keys)
        cross_kv = tuple(blk.cross_attention.project_kv(memory) for blk in self.blks)
        shape = (batch_size, self.num_heads, 0, self.num_hiddens // self.num_heads)
        empty = np.zeros(shape, dtype=memory.dtype, ctx=memory.ctx)
        return enc_mask, cross_kv, tuple((empty, empty) for _ in self.blks)

    def forward(self, X, state):
        enc_mask, cross_kv, cache = state
        num_past = cache[0][0].shape[2]
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens), num_past)
        mask = causal_mask(X.shape[1], num_past, X.ctx)
        new_cache = []
        for blk, (past_k, past_v), (cross_k, cross_v) in zip(self.blks, cache, cross_kv):
            X, k, v = blk(X, past_k, past_v, cross_k, cross_v, enc_mask, mask)
            new_cache.append((k, v))
        return self.dense(X), (enc_mask, cross_kv, tuple(new_cache))
