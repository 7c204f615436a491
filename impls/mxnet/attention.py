"""Attention pieces shared by the Bahdanau and Transformer families (d2l 11.3-11.5)."""
import math

from conformance.compat import import_mxnet

mx = import_mxnet()
from mxnet import np  # noqa: E402
from mxnet.gluon import nn  # noqa: E402


def key_mask(valid_lens, num_keys):
    """(batch, num_keys) boolean mask: True where a key lies within its valid length."""
    return np.arange(num_keys, dtype=valid_lens.dtype, ctx=valid_lens.ctx) < valid_lens.reshape(-1, 1)


def causal_mask(num_queries, num_past, ctx):
    """Query i (at absolute position num_past + i) may see keys 0..num_past + i.

    Aligned bottom-right: a chunk of queries after a cache must not see itself as starting at 0.
    """
    keys = np.arange(num_past + num_queries, dtype="int64", ctx=ctx)
    queries = np.arange(num_queries, dtype="int64", ctx=ctx).reshape(-1, 1) + num_past
    return keys <= queries


def masked_softmax(F, scores, mask):
    """Softmax over the last axis, exactly zero where `mask` (broadcast to `scores`) is False."""
    # An array, not a scalar -inf: MXNet 1.9.1's np.where(cond, x, scalar) passes no gradient to x.
    return F.npx.softmax(F.np.where(mask, scores, F.np.full_like(scores, -math.inf)), axis=-1)


def split_heads(F, X, num_heads):
    """(batch, steps, num_hiddens) -> (batch, heads, steps, num_hiddens / heads)."""
    return F.np.swapaxes(F.npx.reshape(X, (-2, -2, num_heads, -1)), 1, 2)


def merge_heads(F, X):
    """(batch, heads, steps, head_dim) -> (batch, steps, heads * head_dim)."""
    return F.npx.reshape(F.np.swapaxes(X, 1, 2), (-2, -2, -1))


class AdditiveAttention(nn.HybridBlock):
    """score(q, k) = w_v . tanh(W_q q + W_k k). Keys are projected once, by `project_keys`."""

    def __init__(self, num_hiddens, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.W_k = nn.Dense(num_hiddens, use_bias=False, flatten=False)
        self.W_q = nn.Dense(num_hiddens, use_bias=False, flatten=False)
        self.w_v = nn.Dense(1, use_bias=False, flatten=False)
        self.dropout = nn.Dropout(dropout)

    def project_keys(self, keys):
        return self.W_k(keys)

    def hybrid_forward(self, F, query, projected_keys, values, mask):
        """query (batch, num_hiddens); projected_keys, values (batch, steps, .); mask (batch, steps)."""
        features = F.np.tanh(F.np.expand_dims(self.W_q(query), 1) + projected_keys)
        scores = F.np.squeeze(self.w_v(features), -1)
        weights = self.dropout(masked_softmax(F, scores, mask))
        return F.np.squeeze(F.np.matmul(F.np.expand_dims(weights, 1), values), 1)


class MultiHeadAttention(nn.HybridBlock):
    """Scaled dot-product attention over `num_heads` heads, keys and values given already projected."""

    def __init__(self, num_hiddens, num_heads, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_hiddens, self.num_heads = num_hiddens, num_heads
        self.head_dim = num_hiddens // num_heads
        self.dropout = nn.Dropout(dropout)
        self.W_o = nn.Dense(num_hiddens, flatten=False)

    def attend(self, F, queries, keys, values, mask):
        """queries/keys/values already split into heads; mask broadcasts to (batch, heads, q, k)."""
        scores = F.np.matmul(queries, F.np.swapaxes(keys, -1, -2)) / math.sqrt(self.head_dim)
        weights = self.dropout(masked_softmax(F, scores, mask))
        return self.W_o(merge_heads(F, F.np.matmul(weights, values)))
