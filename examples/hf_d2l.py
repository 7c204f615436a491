"""The d2l interface around a Hugging Face encoder-decoder, shared by the Speech2Text, Whisper and
VisionEncoderDecoder examples (no verdict of its own: each of those modules has one).

The decoder state is (encoder outputs, encoder mask or None, per layer (self key, self value, cross
key, cross value)): plain tensors, so the suite sees into it with no codec. A Hugging Face
`EncoderDecoderCache` is rebuilt from them at every call, because `DynamicCache.update` appends in
place and a state handed out must not change under its holder (examples/hf_style_cache.py shows
what the suite says otherwise).
"""
from __future__ import annotations

import os

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # built from configs: nothing to download, ever


def mask(lengths, steps):
    """1 at the first `lengths` of `steps` positions, as Hugging Face's attention masks."""
    return (torch.arange(steps, device=lengths.device) < lengths[:, None]).long()


def cache_of(layers):
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    if not layers:
        return None
    return EncoderDecoderCache(DynamicCache(ddp_cache_data=[layer[:2] for layer in layers]),
                               DynamicCache(ddp_cache_data=[layer[2:] for layer in layers]))


def cache_layers(cache) -> tuple:
    self_cache, cross_cache = cache.self_attention_cache, cache.cross_attention_cache
    return tuple((s.keys, s.values, c.keys, c.values) for s, c in zip(self_cache.layers, cross_cache.layers))


class Decoder(nn.Module):
    """`decoder` is a Hugging Face decoder stack with cross-attention (its `forward` takes `input_ids`,
    `encoder_hidden_states`, `cache`, `use_cache`, and `encoder_attention_mask` where `encoder_mask`
    is given); `head` maps its last hidden state to logits; `encoder_mask(enc_outputs, *args)` is the
    mask of the encoder outputs from the source valid lengths, or None where there is none."""

    def __init__(self, decoder, head, encoder_mask=None):
        super().__init__()
        self.stack, self.head, self.encoder_mask = decoder, head, encoder_mask

    def init_state(self, enc_outputs, *args):
        return enc_outputs, self.encoder_mask(enc_outputs, *args) if self.encoder_mask else None, ()

    def forward(self, X, state):
        enc_outputs, enc_mask, layers = state
        masked = {} if enc_mask is None else {"encoder_attention_mask": enc_mask}
        out = self.stack(input_ids=X, encoder_hidden_states=enc_outputs, cache=cache_of(layers), use_cache=True, **masked)
        return self.head(out.last_hidden_state), (enc_outputs, enc_mask, cache_layers(out.cache))


class EncoderDecoder(nn.Module):
    """d2l's EncoderDecoder: `encoder(X, *args)`, then the decoder from its initial state."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, enc_X, dec_X, *args):
        return self.decoder(dec_X, self.decoder.init_state(self.encoder(enc_X, *args), *args))[0]
