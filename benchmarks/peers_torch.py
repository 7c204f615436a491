"""Peers measured beside the PyTorch reference Transformer and speech model, all at the workload's size.

Each builder takes (batch, steps) and returns a no-argument callable that encodes the workload's
source and greedily decodes exactly `steps` tokens, or raises `Unavailable`. No weights are
downloaded: every model is built from a config with random weights (HF_HUB_OFFLINE=1), or from
our reference's.

- torch.nn.Transformer: no cache, the whole prefix re-run through the decoder every step.
- Hugging Face BART: the cached manual step loop (one forward per token with its key/value
  cache), and `generate` with min = max new tokens.
- Hugging Face Speech2Text (beside `speech`): the same cached manual step loop and `generate`, on the
  workload's frames. Its subsampling is Speech2Text's (two stride-2 convolutions, here of kernel 3
  as ours, each doubling its channels for a GLU), its Transformer pre-norm; otherwise our sizes.
- CTranslate2: the torch reference's Transformer, its weights converted to a float32 CTranslate2
  model (`ctranslate2_spec`), greedy `translate_batch` of exactly `steps` tokens: the same weights,
  the same tokens (tests/test_benchmarks.py).

FLOOR, beside them in benchmarks.ratios only: the decode's matrix products alone (`matmul_floor`), no
decoder but the bound of any loop over these weights; reference / floor says how far the reference is.
"""
from __future__ import annotations

import functools
import inspect
import math
import tempfile

import numpy as np

from . import workload as W
from .backends import Unavailable


def _torch():
    import torch

    W.pin_framework_threads()
    return torch


def nn_transformer(batch, steps):
    torch = _torch()
    from torch import nn

    torch.manual_seed(W.SEED)
    model = nn.ModuleDict(dict(
        src_embed=nn.Embedding(W.VOCAB, W.D_MODEL), tgt_embed=nn.Embedding(W.VOCAB, W.D_MODEL),
        transformer=nn.Transformer(W.D_MODEL, W.HEADS, W.LAYERS, W.LAYERS, W.FFN, dropout=0.0, batch_first=True),
        out=nn.Linear(W.D_MODEL, W.VOCAB),
    )).eval()
    pos = torch.arange(W.SRC_LEN + steps)[:, None] / 10000 ** (torch.arange(0, W.D_MODEL, 2) / W.D_MODEL)
    positions = torch.stack((pos.sin(), pos.cos()), -1).flatten(1)
    src_np, _ = W.source(batch)
    src = torch.from_numpy(src_np)
    scale = math.sqrt(W.D_MODEL)

    @torch.inference_mode()
    def decode():
        memory = model.transformer.encoder(model.src_embed(src) * scale + positions[: src.shape[1]])
        prefix = torch.full((batch, 1), W.BOS)
        for _ in range(steps):
            n = prefix.shape[1]
            tgt = model.tgt_embed(prefix) * scale + positions[:n]
            mask = nn.Transformer.generate_square_subsequent_mask(n)
            h = model.transformer.decoder(tgt, memory, tgt_mask=mask, tgt_is_causal=True)
            prefix = torch.cat((prefix, model.out(h[:, -1]).argmax(-1, keepdim=True)), 1)
        return prefix[:, 1:].numpy()

    return decode


@functools.lru_cache(maxsize=1)
def _bart():
    torch = _torch()
    try:
        from transformers import BartConfig, BartForConditionalGeneration
    except ImportError as exc:
        raise Unavailable(f"transformers is not installed: {exc}") from exc
    config = BartConfig(
        vocab_size=W.VOCAB, d_model=W.D_MODEL, encoder_layers=W.LAYERS, decoder_layers=W.LAYERS,
        encoder_attention_heads=W.HEADS, decoder_attention_heads=W.HEADS, encoder_ffn_dim=W.FFN,
        decoder_ffn_dim=W.FFN, max_position_embeddings=max(W.DECODE_LENGTHS) + 2, dropout=0.0,
        bos_token_id=W.BOS, pad_token_id=1, eos_token_id=2, decoder_start_token_id=W.BOS,
        forced_bos_token_id=None, forced_eos_token_id=None,
        normalize_before=False,  # gone from BartConfig in transformers 5; CTranslate2's converter reads it
    )
    torch.manual_seed(W.SEED)
    return BartForConditionalGeneration(config).eval()


def _bart_inputs(batch):
    torch = _torch()
    src, valid = W.source(batch)
    mask = (np.arange(W.SRC_LEN) < valid[:, None]).astype(np.int64)
    return torch.from_numpy(src), torch.from_numpy(mask)


def _hf_cached_loop(model, batch, steps, encoder_inputs, cross_attention_mask):
    """Greedy decoding through a Hugging Face encoder-decoder's forward, one token per call on its own
    cache: the encoder once, then `steps` decoder calls. `cross_attention_mask(encoder_outputs)` is
    the mask the decoder attends to the encoder with (timed with the decode, as generate computes it)."""
    torch = _torch()
    # transformers 5 renamed past_key_values (argument and output) to cache.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @torch.inference_mode()
    def decode():
        enc = model.get_encoder()(**encoder_inputs)
        mask = cross_attention_mask(enc)
        tokens, cache, out = torch.full((batch, 1), W.BOS), None, []
        for _ in range(steps):
            o = model(encoder_outputs=enc, attention_mask=mask, decoder_input_ids=tokens, use_cache=True,
                      **{cache_arg: cache})
            cache = o[cache_arg]
            tokens = o.logits[:, -1].argmax(-1, keepdim=True)
            out.append(tokens)
        return torch.cat(out, 1).numpy()

    return decode


def _hf_generate(model, steps, inputs):
    """Greedy decoding of exactly `steps` tokens through a Hugging Face model's generate."""
    torch = _torch()

    @torch.inference_mode()
    def decode():
        out = model.generate(**inputs, do_sample=False, num_beams=1, min_new_tokens=steps, max_new_tokens=steps,
                             use_cache=True)
        return out[:, 1:].numpy()  # the first column is decoder_start_token_id

    return decode


def hf_bart_loop(batch, steps):
    src, mask = _bart_inputs(batch)
    return _hf_cached_loop(_bart(), batch, steps, dict(input_ids=src, attention_mask=mask), lambda enc: mask)


def hf_bart_generate(batch, steps):
    src, mask = _bart_inputs(batch)
    return _hf_generate(_bart(), steps, dict(input_ids=src, attention_mask=mask))


def _ct2_linear(spec, weights, prefix, *parts):
    """A CTranslate2 linear layer stacking the canonical projections `parts` along its outputs."""
    spec.weight = np.concatenate([weights[f"{prefix}.{part}.weight"] for part in parts])
    spec.bias = np.concatenate([weights[f"{prefix}.{part}.bias"] for part in parts])


def _ct2_norm(spec, weights, name):
    spec.gamma, spec.beta = weights[f"{name}.weight"], weights[f"{name}.bias"]


def ctranslate2_spec(weights: dict, positions: np.ndarray):
    """Our Transformer (docs/weights.md: post-norm, embeddings times sqrt(d), d2l's interleaved sinusoids,
    layer norm epsilon 1e-5, ReLU) as a CTranslate2 TransformerSpec holding the canonical `weights`.
    CTranslate2 fuses the self-attention's query/key/value and the cross-attention's key/value
    projections, as our references do; the position table is given, not CTranslate2's own layout."""
    from ctranslate2.specs import transformer_spec

    spec = transformer_spec.TransformerSpec.from_config((W.LAYERS, W.LAYERS), W.HEADS, pre_norm=False)
    for side, stack in (("encoder", spec.encoder), ("decoder", spec.decoder)):
        embeddings = stack.embeddings[0] if side == "encoder" else stack.embeddings
        embeddings.weight = weights[f"{side}.embedding.weight"]
        stack.position_encodings.encodings = positions
        for i, layer in enumerate(stack.layer):
            block = f"{side}.blocks.{i}"
            attention = f"{block}.{'attention' if side == 'encoder' else 'self_attention'}"
            _ct2_linear(layer.self_attention.linear[0], weights, attention, "W_q", "W_k", "W_v")
            _ct2_linear(layer.self_attention.linear[1], weights, attention, "W_o")
            _ct2_norm(layer.self_attention.layer_norm, weights, f"{block}.norm1")
            if side == "decoder":
                _ct2_linear(layer.attention.linear[0], weights, f"{block}.cross_attention", "W_q")
                _ct2_linear(layer.attention.linear[1], weights, f"{block}.cross_attention", "W_k", "W_v")
                _ct2_linear(layer.attention.linear[2], weights, f"{block}.cross_attention", "W_o")
                _ct2_norm(layer.attention.layer_norm, weights, f"{block}.norm2")
            _ct2_linear(layer.ffn.linear_0, weights, f"{block}.ffn", "dense1")
            _ct2_linear(layer.ffn.linear_1, weights, f"{block}.ffn", "dense2")
            _ct2_norm(layer.ffn.layer_norm, weights, f"{block}.norm{3 if side == 'decoder' else 2}")
    _ct2_linear(spec.decoder.projection, weights, "decoder", "dense")
    vocabulary = [f"t{i}" for i in range(W.VOCAB)]  # token i is named t<i>: ids map to strings and back
    spec.register_source_vocabulary(vocabulary)
    spec.register_target_vocabulary(vocabulary)
    spec.config.decoder_start_token = spec.config.bos_token = f"t{W.BOS}"
    spec.config.eos_token, spec.config.unk_token = "t2", "t3"  # required names; no decode stops or maps to them
    spec.config.layer_norm_epsilon = 1e-5
    return spec


@functools.lru_cache(maxsize=1)
def _ct2_model_dir():
    """The torch reference's own Transformer, its weights converted, saved as a float32 CTranslate2 model."""
    try:
        import ctranslate2  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"ctranslate2 is not installed (pip install ctranslate2): {exc}") from exc
    from impls.torch.canonical import export_canonical

    from .backends import subject

    model = subject("torch", "transformer", "cpu").model
    spec = ctranslate2_spec(export_canonical(model), model.decoder.pos_encoding.P.float().numpy())
    spec.validate()
    spec.optimize(quantization="float32")
    model_dir = tempfile.mkdtemp(prefix="bench-ct2-")
    spec.save(model_dir)
    return model_dir


def ctranslate2_translate(batch, steps):
    """CTranslate2 greedy decoding of our reference's weights: `end_token=[]` stops on no token, so exactly
    `steps` tokens come out with nothing masked (a `min_decoding_length` would mask its end token)."""
    model_dir = _ct2_model_dir()  # raises Unavailable first when ctranslate2 is missing
    import ctranslate2

    translator = ctranslate2.Translator(model_dir, device="cpu", inter_threads=1, intra_threads=W.THREADS)
    src, _ = W.source(batch)  # every position valid: no padding to express
    tokens = [[f"t{i}" for i in row] for row in src]

    def decode():
        results = translator.translate_batch(tokens, beam_size=1, max_decoding_length=steps, end_token=[])
        return np.array([[int(t[1:]) for t in r.hypotheses[0]] for r in results])

    return decode


def matmul_floor(batch, steps):
    """The decode's matrix products alone, on the reference's weights: per decode the encoder's and the
    cross-attention keys/values' (batch x source rows), per step the decoder's 13 (batch rows), each
    with the weight transposed and contiguous, nothing else: no attention, norms, argmax or loop. At
    batch 1 this is reading the decoder's ~8.4 MB of per-token weights from memory; at batch 32, FLOPs.
    A reference at 1.0x of it would do nothing but its products."""
    torch = _torch()
    from .backends import subject

    model = subject("torch", "transformer", "cpu").model
    enc = [layer for blk in model.encoder.blks for layer in (blk.attention.W_qkv, blk.attention.W_o, blk.ffn[0], blk.ffn[2])]
    enc += [blk.cross_attention.W_kv for blk in model.decoder.blks]
    dec = [layer for blk in model.decoder.blks for layer in (blk.self_attention.W_qkv, blk.self_attention.W_o,
                                                            blk.cross_attention.W_q, blk.cross_attention.W_o,
                                                            blk.ffn[0], blk.ffn[2])] + [model.decoder.dense]
    with torch.inference_mode():
        enc_w = [layer.weight.t().contiguous() for layer in enc]
        dec_w = [layer.weight.t().contiguous() for layer in dec]
    enc_x = [torch.randn(batch * W.SRC_LEN, w.shape[0]) for w in enc_w]
    dec_x = [torch.randn(batch, w.shape[0]) for w in dec_w]

    @torch.inference_mode()
    def decode():
        for x, w in zip(enc_x, enc_w):
            torch.mm(x, w)
        for _ in range(steps):
            for x, w in zip(dec_x, dec_w):
                torch.mm(x, w)

    return decode


@functools.lru_cache(maxsize=1)
def _speech2text():
    torch = _torch()
    try:
        from transformers import Speech2TextConfig, Speech2TextForConditionalGeneration
    except ImportError as exc:
        raise Unavailable(f"transformers is not installed: {exc}") from exc
    config = Speech2TextConfig(
        vocab_size=W.VOCAB, d_model=W.D_MODEL, encoder_layers=W.LAYERS, decoder_layers=W.LAYERS,
        encoder_attention_heads=W.HEADS, decoder_attention_heads=W.HEADS, encoder_ffn_dim=W.FFN,
        decoder_ffn_dim=W.FFN, input_feat_per_channel=W.FEATURES, conv_kernel_sizes=(3, 3), conv_channels=2 * W.D_MODEL,
        max_source_positions=W.FRAMES, max_target_positions=max(W.DECODE_LENGTHS) + 2, dropout=0.0,
        bos_token_id=W.BOS, pad_token_id=1, eos_token_id=2, decoder_start_token_id=W.BOS,
    )
    torch.manual_seed(W.SEED)
    return Speech2TextForConditionalGeneration(config).eval()


def _speech_inputs(batch):
    torch = _torch()
    frames, valid = W.source(batch, "speech")
    mask = (np.arange(frames.shape[1]) < valid[:, None]).astype(np.int64)
    return torch.from_numpy(frames), torch.from_numpy(mask)


def hf_speech2text_loop(batch, steps):
    model = _speech2text()
    frames, mask = _speech_inputs(batch)
    # The encoder's subsampled mask, as generate computes it for the decoder's cross-attention.
    return _hf_cached_loop(model, batch, steps, dict(input_features=frames, attention_mask=mask),
                           lambda enc: model.model._get_feature_vector_attention_mask(enc[0].shape[1], mask))


def hf_speech2text_generate(batch, steps):
    frames, mask = _speech_inputs(batch)
    return _hf_generate(_speech2text(), steps, dict(input_features=frames, attention_mask=mask))


PEERS = {  # name: (label, builder); all sit beside the PyTorch reference Transformer
    "nn-transformer": ("torch.nn.Transformer, full recompute", nn_transformer),
    "hf-bart-loop": ("HF BART, cached manual step loop", hf_bart_loop),
    "hf-bart-generate": ("HF BART, generate", hf_bart_generate),
    "ctranslate2": ("CTranslate2 float32, the reference's weights", ctranslate2_translate),
}
SPEECH_PEERS = {  # beside the PyTorch reference speech model
    "hf-speech2text-loop": ("HF Speech2Text, cached manual step loop", hf_speech2text_loop),
    "hf-speech2text-generate": ("HF Speech2Text, generate", hf_speech2text_generate),
}
FAMILY_PEERS = {"transformer": PEERS, "speech": SPEECH_PEERS}
# Not a decoder (it returns no tokens): the bound beside the peers in benchmarks.ratios.
FLOOR = ("matmul-floor", "the decode's matrix products alone", matmul_floor)
