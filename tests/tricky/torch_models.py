"""Correct PyTorch models built the way toolkits build them, not the way our references are.

Each keeps every contract of the architecture, and each has a property that once made the suite
give a wrong verdict: a parameter shared by encoder, decoder and output layer (BART), a frozen
position table (Marian, Sockeye), a softmax in float32 inside a float64 model and a padding id
masked in one pass but not when stepping (OpenNMT-py), one vocabulary for both sides (BART, T5,
Marian), a key/value cache kept in an object (Hugging Face's `Cache`), one whose constructor takes
torch tensors only (`DynamicCache`), a decoder start id every decode must begin with (BART), a cached
decoder that takes one token per call (OpenNMT-py), a speech encoder that does not subsample, one
that stacks frames (another subsampling, declared), a speech model that takes one width of source
only (an export with static shapes), a captioning encoder of patches (another grid, no BatchNorm).
`CASES` lists what each must get: every contract that applies passed (or skipped, saying why, where
the model declares it cannot take the call), and what the report says of it.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from conformance import Declared, Unsupported, register_state_codec
from impls import speech_encoder_lengths
from impls.torch import make_model
from impls.torch.speech import SpeechEncoder
from impls.torch.attention import MultiHeadAttention, causal_mask
from impls.torch.transformer import CrossAttention, SelfAttention, TransformerDecoder, TransformerDecoderBlock
from tests.broken.torch_models import START, broken  # START: BART's decoder start id


def shared_vocabulary(spec):
    """One vocabulary for source and target, sized for the larger: the spec's source ids are not all."""
    size = max(spec.src_vocab, spec.tgt_vocab)
    # Canonical weights are shaped for the spec's vocabularies, so this model cannot hold them.
    return spec.replace(src_vocab=size, tgt_vocab=size, weights=None), size


# --- Tied and frozen parameters ---------------------------------------------------------------


def tied_embeddings(spec):
    """BART: one embedding table for the encoder's input, the decoder's input and the output layer."""
    spec, size = shared_vocabulary(spec)
    model = make_model(spec)
    shared = model.encoder.embedding.weight
    model.decoder.embedding.weight = shared
    model.decoder.dense.weight = shared  # Linear(num_hiddens, vocab).weight is (vocab, num_hiddens) too
    return Declared(model, src_vocab=size, tgt_vocab=size)


def undeclared_shared_vocabulary(spec):
    """The same model without saying that its source vocabulary is larger than the spec's."""
    return tied_embeddings(spec).model


def frozen_position_table(spec):
    """Marian, Sockeye: the sinusoidal table is a parameter that does not train (requires_grad=False)."""
    model = make_model(spec)
    for encoding in (model.encoder.pos_encoding, model.decoder.pos_encoding):
        table = encoding.P
        del encoding.P  # a buffer becomes a parameter under the same name
        encoding.P = nn.Parameter(table.clone(), requires_grad=False)
    return model


# --- A float32 island in a float64 model ------------------------------------------------------


class Float32Softmax(MultiHeadAttention):
    """OpenNMT-py's attention: `scores.float()` before the softmax, whatever the model's dtype."""

    def forward(self, queries, keys, values, mask):
        scores = queries @ keys.transpose(-1, -2) / math.sqrt(queries.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, -math.inf)
        weights = scores.float().softmax(-1).to(values.dtype)
        return self.W_o((weights @ values).transpose(1, 2).flatten(2))


class Float32SoftmaxSelfAttention(SelfAttention, Float32Softmax):
    pass


class Float32SoftmaxCrossAttention(CrossAttention, Float32Softmax):
    pass


def float32_softmax(spec):
    return broken(spec, SelfAttention=Float32SoftmaxSelfAttention, CrossAttention=Float32SoftmaxCrossAttention)


# --- A reserved padding id --------------------------------------------------------------------

PAD = 0


class PaddingMaskedBlock(TransformerDecoderBlock):
    """Self-attention also skips keys whose token is padding, where the decoder says which those are."""

    def forward(self, X, past, cross_kv, enc_mask, key_is_pad=None):
        mask = causal_mask(X.shape[1], past[0].shape[2], X.device)
        if key_is_pad is not None:  # a query still sees itself, so no row is masked whole
            mask = mask & (~key_is_pad[:, None, None, :] | torch.eye(X.shape[1], dtype=torch.bool, device=X.device))
        Y, present = self.self_attention(X, mask, past)
        Y = self.addnorm1(X, Y)
        Z = self.addnorm2(Y, self.cross_attention(Y, cross_kv, enc_mask))
        return self.addnorm3(Z, self.ffn(Z)), present


class PaddingMaskedDecoder(TransformerDecoder):
    """OpenNMT-py: target id 0 is padding, masked when several tokens come in one call (training), not
    when decoding one step at a time. Correct for any target that holds no padding."""

    def forward(self, X, state):
        enc_mask, cross_kv, cache = state
        num_past = cache[0][0].shape[2]
        key_is_pad = (X == PAD) if X.shape[1] > 1 and num_past == 0 else None
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens), start=num_past)
        new_cache = []
        for blk, past, kv in zip(self.blks, cache, cross_kv):
            X, present = blk(X, past, kv, enc_mask, key_is_pad)
            new_cache.append(present)
        return self.dense(X), (enc_mask, cross_kv, tuple(new_cache))


def padding_id_declared(spec):
    model = broken(spec, TransformerDecoder=PaddingMaskedDecoder, TransformerDecoderBlock=PaddingMaskedBlock)
    return Declared(model, reserved_tgt_ids=(PAD,))


def padding_id_undeclared(spec):
    return padding_id_declared(spec).model


# --- A key/value cache kept in an object ------------------------------------------------------


class KeyValueCache:
    """Hugging Face style: every block's self-attention keys and values, kept in one object."""

    def __init__(self, layers):
        self.layers = tuple(layers)  # ((keys, values) per block), each (batch, heads, steps, head_dim)


register_state_codec(KeyValueCache, lambda c: ((c.layers,), None), lambda aux, children: KeyValueCache(*children))


class UnregisteredCache(KeyValueCache):
    """The same cache of a class nobody registered a state codec for: the suite cannot see into it."""


class ObjectCacheDecoder(TransformerDecoder):
    """The state is (source mask, cross-attention keys/values, cache object), with no cache before the
    first step (`past_key_values=None`), as in Hugging Face's generate. Each step returns a new cache."""

    cache_class = KeyValueCache

    def init_state(self, enc_outputs, enc_valid_lens):
        enc_mask, cross_kv, _ = super().init_state(enc_outputs, enc_valid_lens)
        return enc_mask, cross_kv, None

    def past(self, cache, X):
        """The cache's layers, or empty ones before the first step."""
        if cache is not None:
            return cache.layers
        empty = self.dense.weight.new_zeros(X.shape[0], self.num_heads, 0, self.num_hiddens // self.num_heads)
        return tuple((empty, empty) for _ in self.blks)

    def forward(self, X, state):
        enc_mask, cross_kv, cache = state
        logits, (_, _, present) = super().forward(X, (enc_mask, cross_kv, self.past(cache, X)))
        return logits, (enc_mask, cross_kv, self.cache_class(present))


class UnregisteredCacheDecoder(ObjectCacheDecoder):
    cache_class = UnregisteredCache


def object_cache(spec):
    return broken(spec, TransformerDecoder=ObjectCacheDecoder)


def object_cache_without_codec(spec):
    return broken(spec, TransformerDecoder=UnregisteredCacheDecoder)


class TensorOnlyCache(KeyValueCache):
    """Hugging Face's DynamicCache: built from torch tensors only, whose device and dtype it takes. Its
    constructor serves as the codec's unflatten, so the suite must never hand it numpy arrays."""

    def __init__(self, layers):
        super().__init__(layers)
        keys = self.layers[0][0]
        self.seen = torch.zeros((), device=keys.device, dtype=keys.dtype)


register_state_codec(TensorOnlyCache, lambda c: ((c.layers,), None), lambda aux, children: TensorOnlyCache(*children))


class TensorOnlyCacheDecoder(ObjectCacheDecoder):
    cache_class = TensorOnlyCache


def cache_needs_tensors(spec):
    return broken(spec, TransformerDecoder=TensorOnlyCacheDecoder)


# --- A decoder start id, and a decoder that takes one token per call ---------------------------



class StartTokenFirst(TransformerDecoder):
    """BART-style: a decode begins with the decoder start id; this one refuses any other first token."""

    def forward(self, X, state):
        if state[2][0][0].shape[2] == 0 and bool((X[:, 0] != START).any()):
            raise ValueError(f"a decode begins with decoder_start_token_id={START}, got {X[:, 0].tolist()}")
        return super().forward(X, state)


def start_id_declared(spec):
    """Declares its start id: every decode the suite starts from init_state begins with it."""
    return Declared(broken(spec, TransformerDecoder=StartTokenFirst), reserved_tgt_ids=(0, 1), start_tgt_id=START)


class OneTokenPerStep(TransformerDecoder):
    """OpenNMT-py's cached decoder: after the first step, one token per call."""

    def forward(self, X, state):
        if state[2][0][0].shape[2] > 0 and X.shape[1] > 1:
            raise ValueError(f"step > 0 takes one token per call, got {X.shape[1]}")
        return super().forward(X, state)


def one_token_per_call_declared(spec):
    return Declared(broken(spec, TransformerDecoder=OneTokenPerStep), tokens_per_call=1)


def one_token_per_call_undeclared(spec):
    return broken(spec, TransformerDecoder=OneTokenPerStep)


def float32_only(spec):
    """A port that runs in float32 alone: every contract runs at float32 tolerances, and says so."""
    if spec.dtype != "float32":
        raise Unsupported("this port runs in float32 only")
    return make_model(spec)


# --- Speech models unlike the reference ---------------------------------------------------------


class FramewiseProjection(nn.Linear):
    """One affine map and a ReLU per frame, in place of the subsampling: the time axis stays as it is."""

    def forward(self, X, valid_lens):
        return F.relu(super().forward(X)), valid_lens


def speech_without_subsampling(spec):
    """A Transformer over the frames themselves: one encoder position per frame, so nothing to declare."""
    model = make_model(spec)
    model.encoder.subsampling = FramewiseProjection(spec.num_features, spec.num_hiddens)
    return model


class StacksFrames(nn.Linear):
    """Subsampling by frame stacking (as LAS and some Conformer front ends do): every STACK consecutive
    frames, padded frames zeroed first, concatenated and projected. ceil(L / STACK) positions, not the
    reference's two halvings."""

    def forward(self, X, valid_lens):
        batch, frames, features = X.shape
        X = X.masked_fill(~(torch.arange(frames, device=X.device) < valid_lens[:, None])[..., None], 0)
        X = F.pad(X, (0, 0, 0, -frames % STACK)).reshape(batch, -1, STACK * features)
        return F.relu(super().forward(X)), (valid_lens + STACK - 1) // STACK


STACK = 3


def stacked_lengths(lengths):
    return (lengths + STACK - 1) // STACK


def speech_stacks_three_frames(spec):
    """Another subsampling, declared as what it is: Declared(encoder_lengths=ceil(L / 3))."""
    model = make_model(spec)
    model.encoder.subsampling = StacksFrames(STACK * spec.num_features, spec.num_hiddens)
    return Declared(model, encoder_lengths=stacked_lengths)


class PatchGridEncoder(nn.Module):
    """A ViT-style patch embedding in place of the CNN: non-overlapping 4x8 patches, projected and
    layer-normalised, no BatchNorm; a 4x2 grid of 8 positions where the reference pools to 2x2."""

    def __init__(self, channels, num_hiddens):
        super().__init__()
        self.patches = nn.Conv2d(channels, num_hiddens, (4, 8), stride=(4, 8))
        self.norm = nn.LayerNorm(num_hiddens)

    def forward(self, X, *args):
        return self.norm(self.patches(X).flatten(2).transpose(1, 2))


def captioning_patch_grid(spec):
    model = make_model(spec)
    model.encoder = PatchGridEncoder(spec.channels, spec.num_hiddens)
    return model


FIXED_FRAMES = 19


class FixedWidthEncoder(SpeechEncoder):
    """Takes sources of FIXED_FRAMES frames and no other, as an export with static shapes does."""

    def forward(self, X, valid_lens):
        if X.shape[1] != FIXED_FRAMES:
            raise ValueError(f"this encoder takes {FIXED_FRAMES} frames, not {X.shape[1]}: pad or cut the features")
        return super().forward(X, valid_lens)


def speech_fixed_width(spec):
    model = broken(spec, SpeechEncoder=FixedWidthEncoder)
    return Declared(model, encoder_lengths=speech_encoder_lengths, fixed_src_steps=FIXED_FRAMES)


def speech_fixed_width_undeclared(spec):
    return Declared(speech_fixed_width(spec).model, encoder_lengths=speech_encoder_lengths)


# (factory, family, how the report's header begins for it): every contract must pass.
CASES = [
    ("tied_embeddings", "transformer", "float64"),
    ("frozen_position_table", "transformer", "float64"),
    ("float32_softmax", "transformer", "float64 (float64 requested, computes like float32 in places"),
    ("float32_only", "transformer", "float32 (float64 unavailable"),
    ("padding_id_declared", "transformer", "float64"),
    ("object_cache", "transformer", "float64"),
    ("cache_needs_tensors", "transformer", "float64"),
    ("start_id_declared", "transformer", "float64"),
    ("one_token_per_call_declared", "transformer", "float64"),
    ("speech_without_subsampling", "speech", "float64"),
    ("speech_stacks_three_frames", "speech", "float64"),
    ("captioning_patch_grid", "captioning", "float64"),
]
