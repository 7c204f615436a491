"""A Hugging Face Marian model exported to ONNX as its users export it — encoder, decoder and
decoder-with-past, with Optimum's file and tensor names — validated in ONNX Runtime next to the same
model in PyTorch. Built from a config with a fixed seed: nothing is downloaded (HF_HUB_OFFLINE=1).

    pytest --pyargs conformance --impl=examples.hf_marian_onnx:exported --family=transformer
    pytest --pyargs conformance --impl=examples.hf_marian_onnx:exported,examples.hf_marian_onnx:pytorch \\
        --reference=examples.hf_marian_onnx:pytorch --family=transformer     # the export against its source

The exported model needs no code beyond naming its files (`exported` below): the state is read off
the graphs by Optimum's convention (`present.*` outputs feed `past_key_values.*` inputs; the
encoder's `last_hidden_state` feeds `encoder_hidden_states`; the source mask `encoder_attention_mask`).
Both factories declare `weights_id`, so the cross-framework contracts compare them with each other.

Verdict, in float32 as exported: every contract passes but the two out-of-vocabulary ones, which
fail for negative ids — ONNX's Gather reads -1 as the last row, and ONNX Runtime raises only past
the end (PyTorch raises on both; a true property of the export, reported as such); the gradient
contracts are skipped (ONNX Runtime has none). Against its source the logits differ by float32
rounding (4.6e-7). `exported_in_float64` exports the float64 model and agrees with PyTorch to 9e-14
(torch 2.13's TorchScript exporter keeps the attention scale, a Python float, in float64).
`exported_scale_in_float32` is what an exporter that stores that scale as a float32 constant gives:
every contract of its own passes (a constant is linear: the precision probe reads float64), and
against its source the logits differ by 1.8e-9, which the float64 tolerance (1e-10) catches.
`pytorch`, the source in the d2l interface, passes every contract.
"""
from __future__ import annotations

import functools
import os
import pathlib
import tempfile

import numpy as np
import torch
from torch import nn

from conformance import Declared, Unsupported

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # built from a config: nothing to download, ever

FAMILY = "transformer"
OUT_OF_VOCABULARY = {"out_of_vocabulary_source_raises", "out_of_vocabulary_target_raises"}
EXPECTED = {  # factory: contracts that fail (tests/test_examples.py checks these)
    "pytorch": set(),
    "exported": OUT_OF_VOCABULARY,
}
# The export against its source (--reference=examples.hf_marian_onnx:pytorch): factory: contracts that fail.
SOURCE = "pytorch"
EXPECTED_AGAINST_SOURCE = {
    "exported": OUT_OF_VOCABULARY,
    "exported_in_float64": OUT_OF_VOCABULARY,
    "exported_scale_in_float32": OUT_OF_VOCABULARY | {"logits_match_reference"},
}
VOCAB, PAD, EOS = 32, 31, 0  # one vocabulary for both sides, as Marian's; the decoder starts from PAD
WEIGHTS_ID = "marian-tiny-seed0"  # what both factories hold: the same config and seed


@functools.lru_cache(maxsize=None)
def marian(dtype: str = "float32", activation: str = "swish"):
    """A tiny MarianMTModel, the same weights every time (its seed), in eval mode; swish as in the
    OPUS-MT checkpoints (Marian's default GELU exports as Erf, which has no float64 kernel)."""
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=VOCAB, decoder_vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=256, pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD,
        activation_function=activation, attn_implementation="eager",
        init_std=0.2)  # ~1/sqrt(d_model): attention far from uniform, as in a trained model  # what exporters trace: plain MatMul and Softmax
    torch.manual_seed(0)
    return MarianMTModel(config).to(getattr(torch, dtype)).eval()


def declared(model, spec):
    # Marian reads the source only where attention_mask is 1, so PAD and EOS are ordinary as inputs
    # but greedy must not choose them: reserve them on the target side.
    return Declared(model, src_vocab=VOCAB, tgt_vocab=VOCAB, reserved_src_ids=(PAD,), reserved_tgt_ids=(PAD, EOS),
                    weights_id=WEIGHTS_ID)


# --- the source: the PyTorch model in the d2l interface ---------------------------------------------

def mask(valid_lens, steps):
    return (torch.arange(steps, device=valid_lens.device) < valid_lens[:, None]).long()


class Encoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, X, valid_lens):
        return self.model.get_encoder()(input_ids=X, attention_mask=mask(valid_lens, X.shape[1])).last_hidden_state


class Decoder(nn.Module):
    """State: (encoder outputs, source mask, per layer (self key, self value, cross key, cross value)).
    The cache is rebuilt from the tensors at every call, so a state is never updated in place."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def init_state(self, enc_outputs, valid_lens):
        return enc_outputs, mask(valid_lens, enc_outputs.shape[1]), ()

    def forward(self, X, state):
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        enc_outputs, enc_mask, layers = state
        cache = EncoderDecoderCache(DynamicCache(ddp_cache_data=[layer[:2] for layer in layers]),
                                    DynamicCache(ddp_cache_data=[layer[2:] for layer in layers])) if layers else None
        out = self.model.model.decoder(input_ids=X, encoder_hidden_states=enc_outputs, encoder_attention_mask=enc_mask,
                                       cache=cache, use_cache=True)
        logits = self.model.lm_head(out.last_hidden_state) + self.model.final_logits_bias
        return logits, (enc_outputs, enc_mask, cache_layers(out.cache))


def cache_layers(cache) -> tuple:
    self_cache, cross_cache = cache.self_attention_cache, cache.cross_attention_cache
    return tuple((s.keys, s.values, c.keys, c.values) for s, c in zip(self_cache.layers, cross_cache.layers))


class MarianD2L(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder, self.decoder = Encoder(model), Decoder(model)

    def forward(self, enc_X, dec_X, valid_lens):
        return self.decoder(dec_X, self.decoder.init_state(self.encoder(enc_X, valid_lens), valid_lens))[0]


def pytorch(spec):
    """The source model, in whatever dtype the suite asks for."""
    if spec.family != FAMILY:
        raise Unsupported("a Transformer")
    return declared(MarianD2L(marian(spec.dtype)), spec)


# --- the export, with Optimum's names -----------------------------------------------------------------

class EncoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class DecoderGraph(nn.Module):
    """decoder_model (no past: every present out) or decoder_with_past_model (past in, self-attention presents out)."""

    def __init__(self, model, with_past: bool):
        super().__init__()
        self.model, self.with_past = model, with_past

    def forward(self, input_ids, encoder_attention_mask, encoder_hidden_states, *past):
        layers = tuple(tuple(past[4 * i: 4 * i + 4]) for i in range(len(past) // 4))
        logits, (_, _, presents) = Decoder(self.model)(input_ids, (encoder_hidden_states, encoder_attention_mask, layers))
        if self.with_past:
            return (logits, *(t for layer in presents for t in layer[:2]))
        return (logits, *(t for layer in presents for t in layer))


def kv_names(prefix: str, layers: int, parts=("decoder", "encoder")) -> list[str]:
    return [f"{prefix}.{i}.{part}.{kv}" for i in range(layers) for part in parts for kv in ("key", "value")]


@functools.lru_cache(maxsize=None)
def export(dtype: str = "float32", activation: str = "swish", scale_in_float32: bool = False) -> pathlib.Path:
    """encoder_model.onnx, decoder_model.onnx and decoder_with_past_model.onnx in a folder of this
    process, as `optimum-cli export onnx` lays them out. `scale_in_float32`: the attention scale
    rounded to float32 first, as an exporter that stores it as a float32 constant does."""
    import copy
    import warnings

    model = marian(dtype, activation)
    if scale_in_float32:
        model = copy.deepcopy(model)
        for attention in (m for m in model.modules() if hasattr(m, "scaling")):
            attention.scaling = float(np.float32(attention.scaling))
    folder = pathlib.Path(tempfile.mkdtemp(prefix="marian-onnx-"))
    layers = model.config.decoder_layers
    ids, enc_mask, tgt = torch.randint(1, PAD, (2, 5)), torch.ones(2, 5, dtype=torch.long), torch.randint(1, PAD, (2, 3))
    batch, src, tgt_len, past = {0: "batch_size"}, {1: "encoder_sequence_length"}, {1: "decoder_sequence_length"}, "past_decoder_sequence_length"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values
        hidden = EncoderGraph(model)(ids, enc_mask)
        _, (_, _, presents) = Decoder(model)(tgt, (hidden, enc_mask, ()))
        flat = [t for layer in presents for t in layer]
        export_one(EncoderGraph(model), (ids, enc_mask), folder / "encoder_model.onnx", ["input_ids", "attention_mask"],
                   ["last_hidden_state"], {"input_ids": batch | src, "attention_mask": batch | src, "last_hidden_state": batch | src})
        axes = {"input_ids": batch | tgt_len, "encoder_attention_mask": batch | src, "encoder_hidden_states": batch | src,
                "logits": batch | tgt_len}
        cache_axes = {name: batch | ({2: past} if ".decoder." in name else {2: "encoder_sequence_length"})
                      for prefix in ("past_key_values", "present") for name in kv_names(prefix, layers)}
        export_one(DecoderGraph(model, False), (tgt, enc_mask, hidden), folder / "decoder_model.onnx",
                   ["input_ids", "encoder_attention_mask", "encoder_hidden_states"], ["logits", *kv_names("present", layers)],
                   axes | cache_axes)
        export_one(DecoderGraph(model, True), (tgt[:, :1], enc_mask, hidden, *flat), folder / "decoder_with_past_model.onnx",
                   ["input_ids", "encoder_attention_mask", "encoder_hidden_states", *kv_names("past_key_values", layers)],
                   ["logits", *kv_names("present", layers, ("decoder",))], axes | cache_axes)
    return folder


def export_one(module, args, path, input_names, output_names, dynamic_axes):
    torch.onnx.export(module, args, str(path), dynamo=False, opset_version=17, input_names=input_names,
                      output_names=output_names, dynamic_axes=dynamic_axes)


# --- the exported model, as its user names it -----------------------------------------------------------

def exported_from(folder: pathlib.Path):
    from conformance.bridges.onnxruntime_bridge import OnnxSeq2Seq

    return OnnxSeq2Seq(folder / "encoder_model.onnx", folder / "decoder_with_past_model.onnx",
                       decoder_first=folder / "decoder_model.onnx")


def exported(spec):
    """The float32 export: its graphs take float32, so a float64 run falls back to float32 tolerances."""
    if spec.family != FAMILY:
        raise Unsupported("a Transformer")
    return declared(exported_from(export("float32")), spec)


def exported_in_float64(spec):
    """The float64 model exported: float64 graphs, run in float64 where the suite asks for it."""
    if spec.family != FAMILY:
        raise Unsupported("a Transformer")
    return declared(exported_from(export(spec.dtype)), spec)


def exported_scale_in_float32(spec):
    """The float64 export with its attention scale stored as a float32 constant: every contract of
    its own still passes (a constant is linear: the precision probe reads float64), but against its
    source the logits differ by ~1e-9, which the float64 tolerance (1e-10) catches."""
    if spec.family != FAMILY:
        raise Unsupported("a Transformer")
    return declared(exported_from(export(spec.dtype, scale_in_float32=spec.dtype == "float64")), spec)
