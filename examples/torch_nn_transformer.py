"""A `torch.nn.Transformer` wrapped into the d2l interface, as a user would write it: no cache, the
decoder state keeps the tokens so far and every call recomputes the whole prefix.

    pytest --pyargs conformance --impl=examples.torch_nn_transformer:make_model --family=transformer

Verdict: every contract passes. `forgets_memory_padding_mask` is the same model with a bug seen in
the wild: the source padding mask reaches the encoder but not the decoder's cross-attention, so the
decoder reads padding. The padding contracts fail, and only they:

    pytest --pyargs conformance --impl=examples.torch_nn_transformer:forgets_memory_padding_mask --family=transformer
"""
import math

import torch
from torch import nn

from conformance import ModelSpec, Unsupported

FAMILY = "transformer"
EXPECTED = {  # factory: contracts that fail (tests/test_examples.py checks these)
    "make_model": set(),
    "forgets_memory_padding_mask": {"extra_padding_changes_nothing", "garbage_beyond_valid_length_changes_nothing"},
}


def positions(length, d, dtype):
    """The sinusoidal table of "Attention is all you need", (length, d)."""
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    angles = pos / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    return torch.stack([torch.sin(angles), torch.cos(angles)], -1).flatten(1).to(dtype)


class Embed(nn.Module):
    def __init__(self, vocab, d):
        super().__init__()
        self.tokens, self.d = nn.Embedding(vocab, d), d

    def forward(self, X, start=0):
        x = self.tokens(X) * math.sqrt(self.d)
        return x + positions(start + X.shape[1], self.d, x.dtype)[start:]


class Encoder(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.embed = Embed(spec.src_vocab, spec.num_hiddens)
        layer = nn.TransformerEncoderLayer(spec.num_hiddens, spec.num_heads, spec.ffn_num_hiddens, spec.dropout, batch_first=True)
        self.layers = nn.TransformerEncoder(layer, spec.num_layers, enable_nested_tensor=False)

    def forward(self, X, valid_lens):
        padding = torch.arange(X.shape[1]) >= valid_lens[:, None]
        return self.layers(self.embed(X), src_key_padding_mask=padding), padding


class Decoder(nn.Module):
    """State: (memory, its padding mask, the target tokens decoded so far)."""

    use_memory_mask = True

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.embed = Embed(spec.tgt_vocab, spec.num_hiddens)
        layer = nn.TransformerDecoderLayer(spec.num_hiddens, spec.num_heads, spec.ffn_num_hiddens, spec.dropout, batch_first=True)
        self.layers = nn.TransformerDecoder(layer, spec.num_layers)
        self.dense = nn.Linear(spec.num_hiddens, spec.tgt_vocab)

    def init_state(self, enc_outputs, *args):
        memory, padding = enc_outputs
        return memory, padding, torch.zeros(memory.shape[0], 0, dtype=torch.long)

    def forward(self, X, state):
        memory, padding, previous = state
        tokens = torch.cat([previous, X], 1)
        causal = torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool).triu(1)
        out = self.layers(self.embed(tokens), memory, tgt_mask=causal,
                          memory_key_padding_mask=padding if self.use_memory_mask else None)
        return self.dense(out[:, -X.shape[1]:]), (memory, padding, tokens)


class EncoderDecoder(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, enc_X, dec_X, *args):
        return self.decoder(dec_X, self.decoder.init_state(self.encoder(enc_X, *args), *args))[0]


def encoder_decoder(spec: ModelSpec, decoder_class) -> EncoderDecoder:
    """This encoder with a decoder of `decoder_class`, seeded, in spec.dtype, in evaluation mode."""
    if spec.family != "transformer":
        raise Unsupported("this example is a Transformer")
    torch.manual_seed(spec.seed)
    dtype = {"float32": torch.float32, "float64": torch.float64}[spec.dtype]
    return EncoderDecoder(Encoder(spec), decoder_class(spec)).to(dtype).eval()


def make_model(spec: ModelSpec):
    return encoder_decoder(spec, Decoder)


class DecoderWithoutMemoryMask(Decoder):
    use_memory_mask = False


def forgets_memory_padding_mask(spec: ModelSpec):
    model = make_model(spec)
    model.decoder.__class__ = DecoderWithoutMemoryMask
    return model
