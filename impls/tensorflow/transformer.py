"""Transformer (d2l 11.7) with incremental decoding: a key/value cache and per-step positions."""
import math

import keras
import numpy as np
import tensorflow as tf

from .attention import MultiHeadAttention, causal_mask, key_mask
from .d2l import Decoder, Embedding, Encoder


class PositionalEncoding(keras.layers.Layer):
    """P[i, 2j] = sin(i / 10000^(2j/d)), P[i, 2j+1] = cos(...); `start` offsets a cached step."""

    def __init__(self, num_hiddens, dropout, max_len, **kwargs):
        super().__init__(**kwargs)
        self.dropout = keras.layers.Dropout(dropout)
        pos = np.arange(max_len, dtype=np.float64)[:, None]
        angles = pos / 10000 ** (np.arange(0, num_hiddens, 2, dtype=np.float64) / num_hiddens)
        P = np.zeros((max_len, num_hiddens))
        P[:, 0::2], P[:, 1::2] = np.sin(angles), np.cos(angles)
        self.P = tf.constant(P, dtype=self.compute_dtype)

    def call(self, X, start=0):
        return self.dropout(X + self.P[start : start + tf.shape(X)[1]])


class PositionWiseFFN(keras.layers.Layer):
    def __init__(self, num_hiddens, ffn_num_hiddens, **kwargs):
        super().__init__(**kwargs)
        self.dense1 = keras.layers.Dense(ffn_num_hiddens, activation="relu")
        self.dense2 = keras.layers.Dense(num_hiddens)

    def call(self, X):
        return self.dense2(self.dense1(X))


class AddNorm(keras.layers.Layer):
    def __init__(self, dropout, **kwargs):
        super().__init__(**kwargs)
        self.dropout = keras.layers.Dropout(dropout)
        self.ln = keras.layers.LayerNormalization(epsilon=1e-5)  # PyTorch's epsilon; Keras' default is 1e-3

    def call(self, X, Y):
        return self.ln(self.dropout(Y) + X)


class SelfAttention(MultiHeadAttention):
    """Queries, keys and values from one fused projection; new keys/values extend `past`."""

    def __init__(self, num_hiddens, num_heads, dropout=0.0, **kwargs):
        super().__init__(num_hiddens, num_heads, dropout, **kwargs)
        self.W_qkv = keras.layers.Dense(3 * num_hiddens)

    def project_qkv(self, X):
        """Queries, keys and values of X, each split into heads."""
        return tuple(self.split_heads(t) for t in tf.split(self.W_qkv(X), 3, axis=-1))

    def call(self, X, attn_mask, past=None):
        q, k, v = self.project_qkv(X)
        if past is not None:
            k, v = tf.concat([past[0], k], 2), tf.concat([past[1], v], 2)
        return self.attend(q, k, v, attn_mask), (k, v)


class CrossAttention(MultiHeadAttention):
    """Queries from the decoder; keys/values from the encoder outputs, projected once per source."""

    def __init__(self, num_hiddens, num_heads, dropout=0.0, **kwargs):
        super().__init__(num_hiddens, num_heads, dropout, **kwargs)
        self.W_q = keras.layers.Dense(num_hiddens)
        self.W_kv = keras.layers.Dense(2 * num_hiddens)

    def project_kv(self, memory):
        k, v = tf.split(self.W_kv(memory), 2, axis=-1)
        return self.split_heads(k), self.split_heads(v)

    def call(self, X, kv, attn_mask):
        return super().call(self.split_heads(self.W_q(X)), kv[0], kv[1], attn_mask)


class TransformerEncoderBlock(keras.layers.Layer):
    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout, **kwargs):
        super().__init__(**kwargs)
        self.attention = SelfAttention(num_hiddens, num_heads, dropout)
        self.addnorm1 = AddNorm(dropout)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens)
        self.addnorm2 = AddNorm(dropout)

    def call(self, X, attn_mask):
        Y = self.addnorm1(X, self.attention(X, attn_mask)[0])
        return self.addnorm2(Y, self.ffn(Y))


class TransformerEncoder(Encoder):
    """Outputs (batch, src_steps, num_hiddens); positions past a valid length are never attended to."""

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len, **kwargs):
        super().__init__(**kwargs)
        self.num_hiddens = num_hiddens
        self.embedding = Embedding(vocab_size, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = [TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout) for _ in range(num_blks)]

    def call(self, X, valid_lens):
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens))
        attn_mask = key_mask(valid_lens, tf.shape(X)[1])
        for blk in self.blks:
            X = blk(X, attn_mask)
        return X


class TransformerDecoderBlock(keras.layers.Layer):
    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout, **kwargs):
        super().__init__(**kwargs)
        self.self_attention = SelfAttention(num_hiddens, num_heads, dropout)
        self.addnorm1 = AddNorm(dropout)
        self.cross_attention = CrossAttention(num_hiddens, num_heads, dropout)
        self.addnorm2 = AddNorm(dropout)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens)
        self.addnorm3 = AddNorm(dropout)

    def call(self, X, past, cross_kv, enc_mask):
        attn_mask = causal_mask(tf.shape(X)[1], tf.shape(past[0])[2])
        Y, present = self.self_attention(X, attn_mask, past=past)
        Y = self.addnorm1(X, Y)
        Z = self.addnorm2(Y, self.cross_attention(Y, cross_kv, enc_mask))
        return self.addnorm3(Z, self.ffn(Z)), present


class TransformerDecoder(Decoder):
    """State: (source key mask, per-block cross-attention keys/values, per-block self-attention cache).

    The cache length is the number of tokens decoded so far, and so the position of the next one.
    Every call returns a new state; the one passed in is never modified.
    """

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len, **kwargs):
        super().__init__(**kwargs)
        self.num_hiddens, self.num_heads = num_hiddens, num_heads
        self.embedding = Embedding(vocab_size, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = [TransformerDecoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout) for _ in range(num_blks)]
        self.dense = keras.layers.Dense(vocab_size)

    def memory(self, enc_outputs, enc_valid_lens):
        """(memory, its valid lengths): a token encoder's outputs, one position per source step."""
        return enc_outputs, enc_valid_lens

    def init_state(self, enc_outputs, enc_valid_lens):
        memory, lengths = self.memory(enc_outputs, enc_valid_lens)
        enc_mask = key_mask(lengths, tf.shape(memory)[1])
        cross_kv = tuple(blk.cross_attention.project_kv(memory) for blk in self.blks)
        empty = tf.zeros([tf.shape(memory)[0], self.num_heads, 0, self.num_hiddens // self.num_heads], memory.dtype)
        return enc_mask, cross_kv, tuple((empty, empty) for _ in self.blks)

    def call(self, X, state):
        enc_mask, cross_kv, cache = state
        num_past = tf.shape(cache[0][0])[2]
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens), start=num_past)
        new_cache = []
        for blk, past, kv in zip(self.blks, cache, cross_kv):
            X, present = blk(X, past, kv, enc_mask)
            new_cache.append(present)
        return self.dense(X), (enc_mask, cross_kv, tuple(new_cache))
