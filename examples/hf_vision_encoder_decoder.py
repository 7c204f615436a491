"""A Hugging Face `VisionEncoderDecoderModel` — a ViT encoder and a GPT-2 decoder with cross-attention,
as TrOCR and the ViT-GPT2 captioners are built — from tiny configs, nothing downloaded, in the d2l
interface: images in, no valid lengths (`encoder(X)`, `decoder.init_state(enc_outputs)`).

    pytest --pyargs conformance --impl=examples.hf_vision_encoder_decoder:make_model --family=captioning

Verdict: every contract that applies to images passes (the padding ones, encoder lengths and
out-of-vocabulary source ids are skipped: an image has no valid length and no ids). One true property
shows in the report's header, not as a failure: asked for float64, the model "computes like float32 in
places (probe nonlinearity 4.2e-01 > 1e-04)", so float32 tolerances apply. ViT's eager attention takes
its softmax in float32 (`softmax(..., dtype=torch.float32).to(query.dtype)` in modeling_vit.py), a
float32 island in a float64 model (the same float64 ViT with `attn_implementation="sdpa"` differs
from it by 2.1e-7); GPT-2 and the two speech models keep float64 throughout.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from conformance import Declared, Unsupported
from examples.hf_d2l import Decoder, EncoderDecoder

FAMILY = "captioning"
EXPECTED = {  # factory: contracts that fail (tests/test_examples.py checks these)
    "make_model": set(),
}
BOS_EOS = 0  # GPT-2's <|endoftext|>: every caption starts from it


@functools.lru_cache(maxsize=None)
def vision_encoder_decoder(dtype: str, channels: int, size: int, vocab: int, max_len: int):
    """A tiny VisionEncoderDecoderModel (ViT, patches of 4: a 4x4 grid for 16x16 images; GPT-2 of
    2 layers), the same weights every time (its seed), in eval mode."""
    from transformers import GPT2Config, ViTConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    encoder = ViTConfig(image_size=size, patch_size=4, num_channels=channels, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, initializer_range=0.2)
    decoder = GPT2Config(vocab_size=vocab, n_positions=max_len, n_embd=24, n_layer=2, n_head=4, n_inner=48,
                         bos_token_id=BOS_EOS, eos_token_id=BOS_EOS, initializer_range=0.2,
                         is_decoder=True, add_cross_attention=True)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id = BOS_EOS, BOS_EOS
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return VisionEncoderDecoderModel(config=config).to(getattr(torch, dtype)).eval()


class Encoder(nn.Module):
    """ViT, then the projection VisionEncoderDecoderModel puts between the two widths (32 -> 24)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, X):
        return self.model.enc_to_dec_proj(self.model.encoder(pixel_values=X).last_hidden_state)


def d2l(model) -> EncoderDecoder:
    gpt2 = model.decoder
    return EncoderDecoder(Encoder(model), Decoder(gpt2.transformer, gpt2.lm_head))


def make_model(spec):
    if spec.family != FAMILY:
        raise Unsupported("captioning: images to text")
    if spec.height != spec.width:
        raise Unsupported(f"ViT here takes square images, not {spec.height}x{spec.width}")
    model = vision_encoder_decoder(spec.dtype, spec.channels, spec.height, spec.tgt_vocab, spec.max_len)
    return Declared(d2l(model), reserved_tgt_ids=(BOS_EOS,), start_tgt_id=BOS_EOS)
