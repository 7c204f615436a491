"""Transformer (d2l 11.7) with incremental decoding: a key/value cache and per-step positions."""
import math

import torch
from torch import nn

from .attention import MultiHeadAttention, causal_mask, key_mask
from .d2l import Decoder, Encoder


class PositionalEncoding(nn.Module):
    """P[i, 2j] = sin(i / 10000^(2j/d)), P[i, 2j+1] = cos(...); `start` offsets a cached step."""

    def __init__(self, num_hiddens, dropout, max_len):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]
        angles = pos / 10000 ** (torch.arange(0, num_hiddens, 2, dtype=torch.float64) / num_hiddens)
        P = torch.zeros(max_len, num_hiddens, dtype=torch.float64)
        P[:, 0::2], P[:, 1::2] = torch.sin(angles), torch.cos(angles)
        # Kept in float64: a float64 model's `.to(torch.float64)` would otherwise restore a table
        # already rounded to float32 (errors up to 3e-8). `.to(dtype)` casts it with the model; a
        # model never cast gets it in its own dtype on use (`.to` is free where the dtypes agree).
        self.register_buffer("P", P, persistent=False)

    def forward(self, X, start=0):
        return self.dropout(X + self.P[start : start + X.shape[1]].to(X.dtype))


class PositionWiseFFN(nn.Sequential):
    def __init__(self, num_hiddens, ffn_num_hiddens):
        super().__init__(nn.Linear(num_hiddens, ffn_num_hiddens), nn.ReLU(), nn.Linear(ffn_num_hiddens, num_hiddens))


class AddNorm(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(num_hiddens)

    def forward(self, X, Y):
        return self.ln(self.dropout(Y) + X)


class SelfAttention(MultiHeadAttention):
    """Queries, keys and values from one fused projection; new keys/values extend `past`."""

    def __init__(self, num_hiddens, num_heads, dropout=0.0):
        super().__init__(num_hiddens, num_heads, dropout)
        self.W_qkv = nn.Linear(num_hiddens, 3 * num_hiddens)

    def forward(self, X, mask, past=None):
        q, k, v = self.split_heads(self.W_qkv(X).unflatten(-1, (3, -1)).movedim(-2, 0)).unbind(1)
        if past is not None:
            k, v = torch.cat((past[0], k), 2), torch.cat((past[1], v), 2)
        return super().forward(q, k, v, mask), (k, v)

    def split_heads(self, X):
        # (3, batch, steps, num_hiddens) -> (batch, 3, heads, steps, head_dim), so unbind(1) gives q, k, v.
        return X.unflatten(-1, (self.num_heads, -1)).permute(1, 0, 3, 2, 4)


class CrossAttention(MultiHeadAttention):
    """Queries from the decoder; keys/values from the encoder outputs, projected once per source."""

    def __init__(self, num_hiddens, num_heads, dropout=0.0):
        super().__init__(num_hiddens, num_heads, dropout)
        self.W_q = nn.Linear(num_hiddens, num_hiddens)
        self.W_kv = nn.Linear(num_hiddens, 2 * num_hiddens)

    def project_kv(self, memory):
        k, v = self.W_kv(memory).chunk(2, dim=-1)
        return self.split_heads(k), self.split_heads(v)

    def forward(self, X, kv, mask):
        return super().forward(self.split_heads(self.W_q(X)), *kv, mask)


class TransformerEncoderBlock(nn.Module):
    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout):
        super().__init__()
        self.attention = SelfAttention(num_hiddens, num_heads, dropout)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens)
        self.addnorm2 = AddNorm(num_hiddens, dropout)

    def forward(self, X, mask):
        Y = self.addnorm1(X, self.attention(X, mask)[0])
        return self.addnorm2(Y, self.ffn(Y))


class TransformerEncoder(Encoder):
    """Outputs (batch, src_steps, num_hiddens); positions past a valid length are never attended to."""

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.embedding = nn.Embedding(vocab_size, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = nn.ModuleList(
            TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout) for _ in range(num_blks)
        )

    def forward(self, X, valid_lens):
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens))
        mask = key_mask(valid_lens, X.shape[1])
        for blk in self.blks:
            X = blk(X, mask)
        return X


class TransformerDecoderBlock(nn.Module):
    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout):
        super().__init__()
        self.self_attention = SelfAttention(num_hiddens, num_heads, dropout)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.cross_attention = CrossAttention(num_hiddens, num_heads, dropout)
        self.addnorm2 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens)
        self.addnorm3 = AddNorm(num_hiddens, dropout)

    def forward(self, X, past, cross_kv, enc_mask):
        mask = causal_mask(X.shape[1], past[0].shape[2], X.device)
        Y, present = self.self_attention(X, mask, past)
        Y = self.addnorm1(X, Y)
        Z = self.addnorm2(Y, self.cross_attention(Y, cross_kv, enc_mask))
        return self.addnorm3(Z, self.ffn(Z)), present


class TransformerDecoder(Decoder):
    """State: (source key mask, per-block cross-attention keys/values, per-block self-attention cache).

    The cache length is the number of tokens decoded so far, and so the position of the next one.
    Every call returns a new state; the one passed in is never modified.
    """

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len):
        super().__init__()
        self.num_hiddens, self.num_heads = num_hiddens, num_heads
        self.embedding = nn.Embedding(vocab_size, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = nn.ModuleList(
            TransformerDecoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout) for _ in range(num_blks)
        )
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def memory(self, enc_outputs, enc_valid_lens):
        """(memory, its valid lengths): a token encoder's outputs, one position per source step."""
        return enc_outputs, enc_valid_lens

    def init_state(self, enc_outputs, enc_valid_lens):
        memory, lengths = self.memory(enc_outputs, enc_valid_lens)
        enc_mask = key_mask(lengths, memory.shape[1])
        cross_kv = tuple(blk.cross_attention.project_kv(memory) for blk in self.blks)
        empty = memory.new_zeros(memory.shape[0], self.num_heads, 0, self.num_hiddens // self.num_heads)
        return enc_mask, cross_kv, tuple((empty, empty) for _ in self.blks)

    def forward(self, X, state):
        enc_mask, cross_kv, cache = state
        num_past = cache[0][0].shape[2]
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens), start=num_past)
        new_cache = []
        for blk, past, kv in zip(self.blks, cache, cross_kv):
            X, present = blk(X, past, kv, enc_mask)
            new_cache.append(present)
        return self.dense(X), (enc_mask, cross_kv, tuple(new_cache))
