"""Attention pieces shared by the Bahdanau and Transformer families (d2l 11.3-11.5)."""
import math

import torch
from torch import nn
from torch.nn import functional as F


def key_mask(valid_lens, num_keys):
    """(batch, 1, 1, num_keys) boolean mask: True where a key lies within its valid length."""
    keys = torch.arange(num_keys, device=valid_lens.device)
    return (keys < valid_lens[:, None])[:, None, None, :]


def causal_mask(num_queries, num_past, device):
    """Query i (at absolute position num_past + i) may see keys 0..num_past + i.

    Aligned bottom-right: a chunk of queries after a cache must not see itself as starting at 0.
    """
    keys = torch.arange(num_past + num_queries, device=device)
    queries = torch.arange(num_queries, device=device)[:, None] + num_past
    return keys <= queries


class AdditiveAttention(nn.Module):
    """score(q, k) = w_v . tanh(W_q q + W_k k). Keys are projected once, by `project_keys`."""

    def __init__(self, num_hiddens, dropout=0.0):
        super().__init__()
        self.W_k = nn.Linear(num_hiddens, num_hiddens, bias=False)
        self.W_q = nn.Linear(num_hiddens, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def project_keys(self, keys):
        return self.W_k(keys)

    def forward(self, query, projected_keys, values, mask):
        """query (batch, num_hiddens); projected_keys, values (batch, steps, .); mask (batch, steps)."""
        features = torch.tanh(self.W_q(query)[:, None, :] + projected_keys)
        scores = self.w_v(features).squeeze(-1).masked_fill(~mask, -math.inf)
        weights = self.dropout(F.softmax(scores, dim=-1))
        return torch.bmm(weights[:, None, :], values).squeeze(1)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over `num_heads` heads, keys and values given already projected."""

    def __init__(self, num_hiddens, num_heads, dropout=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.W_o = nn.Linear(num_hiddens, num_hiddens)

    def split_heads(self, X):
        """(batch, steps, num_hiddens) -> (batch, heads, steps, num_hiddens / heads)."""
        return X.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, queries, keys, values, mask):
        """queries/keys/values already split into heads; mask broadcasts to (batch, heads, q, k)."""
        out = F.scaled_dot_product_attention(
            queries, keys, values, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.W_o(out.transpose(1, 2).flatten(2))
