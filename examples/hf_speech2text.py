"""A Hugging Face Speech2Text (`Speech2TextForConditionalGeneration`, the S2T models of fairseq)
built from a tiny config, nothing downloaded, in the d2l interface: feature frames and their valid
lengths in, the encoder given the attention mask its users pass.

    pytest --pyargs conformance --impl=examples.hf_speech2text:make_model --family=speech

Its encoder subsamples the frames by two stride-2 convolutions, so it declares its output lengths
(`Speech2TextPreTrainedModel._get_feat_extract_output_lengths`, ((L - 1) // 2 + 1 - 1) // 2 + 1).

Verdict: every contract passes but the two padding ones, which fail for a true property of the
model: `Conv1dSubsampler` convolves the padded frames with the valid ones (kernel 5: each output
reads two frames to either side) and nothing masks them before either convolution; the attention
mask comes only after it. So the last encoder positions of an utterance read whatever lies beyond its
valid length, and self-attention spreads that to every position. Zero padding, as the feature
extractor pads a batch, is no cure: the first convolution's outputs beyond the valid length hold its
bias, not the zeros the second convolution pads an unpadded utterance with. With these weights, an
utterance of 13 frames alone and the same with 8 zero frames after it differ by 15% (relative,
largest encoder output; tests/test_examples.py measures it), so a transcript depends on the longest utterance of its batch (fairseq's S2T
has the same subsampler). `extra_padding_changes_nothing` and
`garbage_beyond_valid_length_changes_nothing` fail, the finding naming the cause ("the source beyond
its valid lengths reaches the encoder's valid outputs"); `encoder_lengths_are_as_declared` passes,
so the declared lengths are right and the leak is not a length bug.

`masked_subsampling` is the fix, as the suite's own `speech` references do it: the frames beyond each
valid length, and the first convolution's outputs beyond its output length, set to zero before each
convolution. It passes every contract that applies:

    pytest --pyargs conformance --impl=examples.hf_speech2text:masked_subsampling --family=speech
"""
from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from conformance import Declared, Unsupported
from examples.hf_d2l import Decoder, EncoderDecoder, mask

FAMILY = "speech"
EXPECTED = {  # factory: contracts that fail (tests/test_examples.py checks these)
    "make_model": {"extra_padding_changes_nothing", "garbage_beyond_valid_length_changes_nothing"},
    "masked_subsampling": set(),
}
BOS, PAD, EOS = 0, 1, 2  # Speech2Text's ids; decoding starts from EOS (decoder_start_token_id)


@functools.lru_cache(maxsize=None)
def speech2text(dtype: str, num_features: int, vocab: int, max_len: int):
    """A tiny Speech2TextForConditionalGeneration, the same weights every time (its seed), in eval mode."""
    from transformers import Speech2TextConfig, Speech2TextForConditionalGeneration

    config = Speech2TextConfig(
        vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_conv_layers=2,
        conv_kernel_sizes=(5, 5), conv_channels=32, input_feat_per_channel=num_features, input_channels=1,
        max_source_positions=max_len, max_target_positions=max_len, pad_token_id=PAD, bos_token_id=BOS,
        eos_token_id=EOS, decoder_start_token_id=EOS, attn_implementation="eager", init_std=0.2)
    torch.manual_seed(0)
    return Speech2TextForConditionalGeneration(config).to(getattr(torch, dtype)).eval()


def encoder_lengths(lengths):
    """Two stride-2 convolutions (kernel 5, padding 2): what `_get_feat_extract_output_lengths` computes."""
    for _ in range(2):
        lengths = (lengths - 1) // 2 + 1
    return lengths


class Encoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, X, valid_lens):
        encoder = self.model.get_encoder()
        if isinstance(encoder.conv, MaskedSubsampler):
            encoder.conv.lengths = valid_lens  # read in the call below: Speech2TextEncoder passes the frames only
        return encoder(input_features=X, attention_mask=mask(valid_lens, X.shape[1])).last_hidden_state


class MaskedSubsampler(nn.Module):
    """Conv1dSubsampler with what lies beyond the valid lengths set to zero before each convolution."""

    def __init__(self, subsampler):
        super().__init__()
        self.conv_layers, self.lengths = subsampler.conv_layers, None

    def forward(self, input_features):
        hidden, lengths = input_features.transpose(1, 2), self.lengths
        for conv in self.conv_layers:
            hidden = hidden * mask(lengths, hidden.shape[2])[:, None, :].to(hidden.dtype)
            hidden, lengths = nn.functional.glu(conv(hidden), dim=1), (lengths - 1) // 2 + 1
        return hidden.transpose(1, 2)


def encoder_mask(enc_outputs, valid_lens):
    return mask(encoder_lengths(valid_lens), enc_outputs.shape[1])


def d2l(model) -> EncoderDecoder:
    return EncoderDecoder(Encoder(model), Decoder(model.model.decoder, model.lm_head, encoder_mask))


def make_model(spec):
    if spec.family != FAMILY:
        raise Unsupported("speech: feature frames to text")
    model = speech2text(spec.dtype, spec.num_features, spec.tgt_vocab, spec.max_len)
    # PAD is reserved: the decoder's sinusoidal positions skip a PAD within one call but its cache counts it
    # between calls, so a target with PAD inside decoded in pieces differs from one pass (drawn as an
    # ordinary token, chunked_equals_teacher_forced fails by 6.8e-2). Speech2Text never reads PAD there.
    return Declared(d2l(model), reserved_tgt_ids=(PAD, EOS), start_tgt_id=EOS, encoder_lengths=encoder_lengths)


def masked_subsampling(spec):
    """The same weights, the padded frames masked before each convolution of the subsampler."""
    if spec.family != FAMILY:
        raise Unsupported("speech: feature frames to text")
    model = copy.deepcopy(speech2text(spec.dtype, spec.num_features, spec.tgt_vocab, spec.max_len))
    model.model.encoder.conv = MaskedSubsampler(model.model.encoder.conv)
    return Declared(d2l(model), reserved_tgt_ids=(PAD, EOS), start_tgt_id=EOS, encoder_lengths=encoder_lengths)
