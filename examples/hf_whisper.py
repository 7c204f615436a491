"""A Hugging Face Whisper (`WhisperForConditionalGeneration`) built from a tiny config, nothing
downloaded, in the d2l interface. Whisper takes windows of one width only — 3000 log-mel frames (30 s)
in the released models, `2 * max_source_positions` in general; its encoder raises on any other — and
it has no source mask: `WhisperEncoder` ignores `attention_mask`, and the decoder attends over every
encoder position. So the model declares `fixed_src_steps`, and its encoder takes the valid lengths
the d2l interface hands it and does nothing with them, as Whisper does.

    pytest --pyargs conformance --impl=examples.hf_whisper:make_model --family=speech

Verdict: the contracts that need sources of other widths are skipped, saying so
(`extra_padding_changes_nothing`, `encoder_lengths_are_as_declared`: "the model takes sources of
exactly 30 frames (Declared(fixed_src_steps=30))"); every other contract passes but
`garbage_beyond_valid_length_changes_nothing`, which fails for a true property: Whisper has no valid
length. Everything in its window is audio to it, so whatever lies beyond an utterance changes the
transcript (logits 98% apart, relative); its feature extractor fills the window with silence, and a
d2l caller holding frames and lengths must do the same. `silence_beyond_valid_length` does (frames
past each valid length set to zeros before the encoder) and passes every contract that applies.

    pytest --pyargs conformance --impl=examples.hf_whisper:silence_beyond_valid_length --family=speech
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from conformance import Declared, Unsupported
from examples.hf_d2l import Decoder, EncoderDecoder, mask

FAMILY = "speech"
EXPECTED = {  # factory: contracts that fail (tests/test_examples.py checks these)
    "make_model": {"garbage_beyond_valid_length_changes_nothing"},
    "silence_beyond_valid_length": set(),
}
FRAMES = 30  # the window: 3000 frames in the released models, scaled down by 100 (max_source_positions 15)
SOT, EOT, PAD = 0, 1, 2  # <|startoftranscript|>, <|endoftext|> (also Whisper's padding)


@functools.lru_cache(maxsize=None)
def whisper(dtype: str, num_features: int, vocab: int, max_len: int):
    """A tiny WhisperForConditionalGeneration, the same weights every time (its seed), in eval mode."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        vocab_size=vocab, num_mel_bins=num_features, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=FRAMES // 2, max_target_positions=max_len, pad_token_id=EOT, bos_token_id=EOT,
        eos_token_id=EOT, decoder_start_token_id=SOT, attn_implementation="eager", init_std=0.2)
    torch.manual_seed(0)
    return WhisperForConditionalGeneration(config).to(getattr(torch, dtype)).eval()


class Encoder(nn.Module):
    def __init__(self, model, silence_beyond_valid_length: bool = False):
        super().__init__()
        self.model, self.silence_beyond_valid_length = model, silence_beyond_valid_length

    def forward(self, X, valid_lens):
        if self.silence_beyond_valid_length:  # what is not the utterance becomes one constant frame
            X = X * mask(valid_lens, X.shape[1])[:, :, None].to(X.dtype)
        # Whisper reads (batch, mel bins, frames); it has no use for valid lengths.
        return self.model.get_encoder()(input_features=X.transpose(1, 2)).last_hidden_state


def d2l(model, silence_beyond_valid_length: bool = False) -> EncoderDecoder:
    return EncoderDecoder(Encoder(model, silence_beyond_valid_length), Decoder(model.model.decoder, model.proj_out))


def make_model(spec):
    if spec.family != FAMILY:
        raise Unsupported("speech: log-mel frames to text")
    model = whisper(spec.dtype, spec.num_features, spec.tgt_vocab, spec.max_len)
    return Declared(d2l(model), reserved_tgt_ids=(EOT,), start_tgt_id=SOT, fixed_src_steps=FRAMES)


def silence_beyond_valid_length(spec):
    """Whisper as a d2l model must be used: the frames beyond each valid length set to zeros (one fixed
    frame, as the silence Whisper's feature extractor pads a clip with) before the encoder sees them."""
    if spec.family != FAMILY:
        raise Unsupported("speech: log-mel frames to text")
    model = whisper(spec.dtype, spec.num_features, spec.tgt_vocab, spec.max_len)
    return Declared(d2l(model, silence_beyond_valid_length=True), reserved_tgt_ids=(EOT,), start_tgt_id=SOT,
                    fixed_src_steps=FRAMES)
