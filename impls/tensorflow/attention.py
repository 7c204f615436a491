"""Attention pieces shared by the Bahdanau and Transformer families (d2l 11.3-11.5)."""
import math

import keras
import tensorflow as tf

from .d2l import Layer


def key_mask(valid_lens, num_keys):
    """(batch, 1, 1, num_keys) boolean mask: True where a key lies within its valid length."""
    return tf.sequence_mask(valid_lens, num_keys)[:, None, None, :]


def causal_mask(num_queries, num_past):
    """Query i (at absolute position num_past + i) may see keys 0..num_past + i.

    Aligned bottom-right: a chunk of queries after a cache must not see itself as starting at 0.
    """
    keys = tf.range(num_past + num_queries)
    queries = tf.range(num_queries)[:, None] + num_past
    return keys <= queries


def masked_softmax(scores, mask):
    """Softmax over the last axis with the keys `mask` rules out weighted exactly 0."""
    return tf.nn.softmax(tf.where(mask, scores, tf.constant(-math.inf, scores.dtype)), axis=-1)


class AdditiveAttention(Layer):
    """score(q, k) = w_v . tanh(W_q q + W_k k). Keys are projected once, by `project_keys`."""

    def __init__(self, num_hiddens, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.W_k = keras.layers.Dense(num_hiddens, use_bias=False)
        self.W_q = keras.layers.Dense(num_hiddens, use_bias=False)
        self.w_v = keras.layers.Dense(1, use_bias=False)
        self.dropout = keras.layers.Dropout(dropout)

    def project_keys(self, keys):
        return self.W_k(keys)

    def call(self, query, projected_keys, values, key_mask):
        """query (batch, num_hiddens); projected_keys, values (batch, steps, .); key_mask (batch, steps)."""
        features = tf.tanh(self.W_q(query)[:, None, :] + projected_keys)
        weights = self.dropout(masked_softmax(tf.squeeze(self.w_v(features), -1), key_mask))
        return tf.squeeze(tf.matmul(weights[:, None, :], values), 1)


class MultiHeadAttention(Layer):
    """Scaled dot-product attention over `num_heads` heads, keys and values given already projected."""

    def __init__(self, num_hiddens, num_heads, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.dropout = keras.layers.Dropout(dropout)
        self.W_o = keras.layers.Dense(num_hiddens)

    def split_heads(self, X):
        """(batch, steps, num_hiddens) -> (batch, heads, steps, num_hiddens / heads)."""
        batch, steps = tf.shape(X)[0], tf.shape(X)[1]
        # The head size stays static, so a tf.function trace with unknown batch and steps still knows it.
        X = tf.reshape(X, (batch, steps, self.num_heads, X.shape[-1] // self.num_heads))
        return tf.transpose(X, (0, 2, 1, 3))

    def merge_heads(self, X):
        """The inverse of `split_heads`."""
        batch, steps = tf.shape(X)[0], tf.shape(X)[2]
        return tf.reshape(tf.transpose(X, (0, 2, 1, 3)), (batch, steps, self.num_heads * X.shape[-1]))

    def call(self, queries, keys, values, attn_mask):
        return self.attend(queries, keys, values, attn_mask)

    def attend(self, queries, keys, values, attn_mask):
        """queries/keys/values already split into heads; attn_mask broadcasts to (batch, heads, q, k).

        A plain method as well as the layer's call, so the cached greedy loop (decoding.py) can attend
        over its preallocated cache with these very weights."""
        scores = tf.matmul(queries, keys, transpose_b=True) / math.sqrt(queries.shape[-1])
        weights = self.dropout(masked_softmax(scores, attn_mask))
        return self.W_o(self.merge_heads(tf.matmul(weights, values)))
