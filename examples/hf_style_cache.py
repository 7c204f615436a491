"""A Transformer decoder that keeps its cache in an object, as Hugging Face's models do, over the
`torch.nn.TransformerEncoder` of examples/torch_nn_transformer.py.

    pytest --pyargs conformance --impl=examples.hf_style_cache:make_model --family=transformer

The suite sees into the cache object through the state codec registered below; without it, the
state contracts would fail naming `examples.hf_style_cache.Cache`. Verdict: every contract passes.
`cache_updated_in_place` appends to the cache in place, as `DynamicCache.update` does: a state
handed out then changes under its holder, and beam search, which decodes several continuations
from one state, breaks. The two state-reuse contracts that watch for it fail:

    pytest --pyargs conformance --impl=examples.hf_style_cache:cache_updated_in_place --family=transformer
"""
import torch
from torch import nn

from conformance import ModelSpec, register_state_codec
from examples.torch_nn_transformer import Embed, encoder_decoder

FAMILY = "transformer"
EXPECTED = {  # factory: contracts that fail (tests/test_examples.py checks these)
    "make_model": set(),
    "cache_updated_in_place": {"decode_does_not_mutate_state", "decode_twice_from_same_state"},
}


class Cache:
    """Per layer, the inputs that layer has attended over so far, (batch, steps, d)."""

    def __init__(self, layers):
        self.layers = list(layers)

    def update(self, layers) -> "Cache":
        return Cache(layers)

    def length(self) -> int:
        return self.layers[0].shape[1]


register_state_codec(Cache, lambda cache: (cache.layers, None), lambda aux, layers: Cache(layers))


class Block(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        d = spec.num_hiddens
        self.self_attention = nn.MultiheadAttention(d, spec.num_heads, spec.dropout, batch_first=True)
        self.cross_attention = nn.MultiheadAttention(d, spec.num_heads, spec.dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d, spec.ffn_num_hiddens), nn.ReLU(), nn.Linear(spec.ffn_num_hiddens, d))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3))
        self.dropout = nn.Dropout(spec.dropout)

    def forward(self, x, past, memory, padding):
        keys = torch.cat([past, x], 1)
        # Query i sits at position len(past) + i and must not see keys after it.
        future = torch.arange(keys.shape[1]) > torch.arange(x.shape[1])[:, None] + past.shape[1]
        y = self.norms[0](x + self.dropout(self.self_attention(x, keys, keys, attn_mask=future, need_weights=False)[0]))
        z = self.norms[1](y + self.dropout(self.cross_attention(y, memory, memory, key_padding_mask=padding, need_weights=False)[0]))
        return self.norms[2](z + self.dropout(self.ffn(z))), keys


class CachedDecoder(nn.Module):
    """State: (memory, its padding mask, Cache)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.embed = Embed(spec.tgt_vocab, spec.num_hiddens)
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.num_layers))
        self.dense = nn.Linear(spec.num_hiddens, spec.tgt_vocab)

    def init_state(self, enc_outputs, *args):
        memory, padding = enc_outputs
        empty = memory.new_zeros(memory.shape[0], 0, memory.shape[2])
        return memory, padding, Cache([empty] * len(self.blocks))

    def forward(self, X, state):
        memory, padding, cache = state
        x, seen = self.embed(X, start=cache.length()), []
        for block, past in zip(self.blocks, cache.layers):
            x, keys = block(x, past, memory, padding)
            seen.append(keys)
        return self.dense(x), (memory, padding, cache.update(seen))


def make_model(spec: ModelSpec):
    return encoder_decoder(spec, CachedDecoder)


class InPlaceCache(Cache):
    def update(self, layers):
        self.layers[:] = layers  # DynamicCache.update: the caller's cache grows too
        return self


register_state_codec(InPlaceCache, lambda cache: (cache.layers, None), lambda aux, layers: InPlaceCache(layers))


class InPlaceCachedDecoder(CachedDecoder):
    def init_state(self, enc_outputs, *args):
        memory, padding, cache = super().init_state(enc_outputs, *args)
        return memory, padding, InPlaceCache(cache.layers)


def cache_updated_in_place(spec: ModelSpec):
    model = make_model(spec)
    model.decoder.__class__ = InPlaceCachedDecoder
    return model
