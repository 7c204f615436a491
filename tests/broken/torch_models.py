"""Deliberately broken PyTorch models. Each subclasses one reference module and breaks one thing.

`CASES` at the bottom lists (factory, family, contracts expected to fail): exactly those fail,
and every other contract passes, which shows both that a contract can fail and that it does not
fire on bugs that are not its business.
"""
import math
import sys

import torch
from torch import nn
from torch.nn import functional as F

from conformance.spec import Declared, declares_canonical_weights
from impls import speech_encoder_lengths
from impls.torch import make_model
from impls.torch.attention import causal_mask, key_mask
from impls.torch.captioning import CaptioningEncoder
from impls.torch.speech import ConvSubsampling, SpeechDecoder, SpeechEncoder
from impls.torch.canonical import load_canonical
from impls.torch.bahdanau import AttentionDecoder
from impls.torch.d2l import EncoderDecoder
from impls.torch.recurrent import Seq2SeqDecoder, Seq2SeqEncoder
from impls.torch.transformer import SelfAttention, TransformerDecoder, TransformerDecoderBlock, TransformerEncoderBlock
from tests.broken.common import (
    AUTOREGRESSIVE, CACHE_BUG, CROSS_FRAMEWORK, GRADIENTS, PADDING, OUT_OF_VOCABULARY, converted, fault_factories,
    source_cases)


def broken(spec, **classes):
    """The reference model for `spec`, with every submodule of class C re-classed to classes[C]. It
    does not declare canonical weights: the cross-framework contracts skip it, unless told otherwise."""
    model = make_model(spec)
    for module in model.modules():
        if type(module).__name__ in classes:
            module.__class__ = classes[type(module).__name__]
    return model


# --- Transformer cache and positions --------------------------------------------------------


class PositionsFromZero(TransformerDecoder):
    """Positions restart at 0 on every call, as in d2l's own TransformerDecoder when predicting."""

    def forward(self, X, state):
        enc_mask, cross_kv, cache = state
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens), start=0)
        new_cache = []
        for blk, past, kv in zip(self.blks, cache, cross_kv):
            X, present = blk(X, past, kv, enc_mask)
            new_cache.append(present)
        return self.dense(X), (enc_mask, cross_kv, tuple(new_cache))


def transformer_positions_from_zero(spec):
    return broken(spec, TransformerDecoder=PositionsFromZero)


class TopLeftMaskBlock(TransformerDecoderBlock):
    """The causal mask forgets the cache: query i sees keys 0..i, not 0..past+i (x-transformers#187)."""

    def forward(self, X, past, cross_kv, enc_mask):
        mask = causal_mask(X.shape[1], 0, X.device)
        mask = torch.cat([mask, torch.zeros(X.shape[1], past[0].shape[2], dtype=torch.bool)], 1)
        Y, present = self.self_attention(X, mask, past)
        Y = self.addnorm1(X, Y)
        Z = self.addnorm2(Y, self.cross_attention(Y, cross_kv, enc_mask))
        return self.addnorm3(Z, self.ffn(Z)), present


def transformer_top_left_mask(spec):
    return broken(spec, TransformerDecoderBlock=TopLeftMaskBlock)


class CachedScoresOffBy1e5(SelfAttention):
    """With a non-empty cache, attention scores are scaled by 1 + 1e-5: attention shifts by ~1e-5,
    logits by ~1e-6. Invisible at float32 tolerances, obvious at float64 ones."""

    def forward(self, X, mask, past=None):
        if past is None or past[0].shape[2] == 0:
            return super().forward(X, mask, past)
        q, k, v = self.split_heads(self.W_qkv(X).unflatten(-1, (3, -1)).movedim(-2, 0)).unbind(1)
        scale = (1 + 1e-5) / math.sqrt(q.shape[-1])
        k, v = torch.cat((past[0], k), 2), torch.cat((past[1], v), 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        return self.W_o(out.transpose(1, 2).flatten(2)), (k, v)


def transformer_cached_attention_off_by_1e5(spec):
    return broken(spec, SelfAttention=CachedScoresOffBy1e5)


class NoCausalMaskBlock(TransformerDecoderBlock):
    """The decoder's self-attention sees the whole target: teacher forcing peeks at the future."""

    def forward(self, X, past, cross_kv, enc_mask):
        Y, present = self.self_attention(X, None, past)
        Y = self.addnorm1(X, Y)
        Z = self.addnorm2(Y, self.cross_attention(Y, cross_kv, enc_mask))
        return self.addnorm3(Z, self.ffn(Z)), present


def transformer_without_causal_mask(spec):
    return broken(spec, TransformerDecoderBlock=NoCausalMaskBlock)


def transformer_short_position_table(spec):
    """Ignores spec.max_len: a position table of 4 rows, so any longer sequence raises, whatever its ids."""
    return make_model(spec.replace(max_len=4))


# --- Padding, batch, state ------------------------------------------------------------------


class PaddedEncoder(Seq2SeqEncoder):
    """d2l's encoder: runs the RNN over padding too, so the final state depends on it."""

    def forward(self, X, valid_lens):
        return self.rnn(self.embedding(X.t()))


def gru_encoder_reads_padding(spec):
    return broken(spec, Seq2SeqEncoder=PaddedEncoder)


class InPlaceDecoder(Seq2SeqDecoder):
    """Writes the new hidden state into the tensor it was given (OpenNMT-py#794's in-place copy)."""

    def forward(self, X, state):
        logits, (context, hidden_state) = super().forward(X, state)
        state[1].copy_(hidden_state)
        return logits, (context, state[1])


def rnn_decoder_mutates_state(spec):
    return broken(spec, Seq2SeqDecoder=InPlaceDecoder)


class StateOnTheModule(AttentionDecoder):
    """Keeps the attention memory on `self` at init_state instead of in the state it returns."""

    def init_state(self, enc_outputs, enc_valid_lens):
        memory, keys, mask, hidden_state = super().init_state(enc_outputs, enc_valid_lens)
        self.memory = (memory, keys, mask)
        return hidden_state

    def forward(self, X, state):
        return super().forward(X, (*self.memory, state))[0], state


def bahdanau_state_on_module(spec):
    return broken(spec, AttentionDecoder=StateOnTheModule)


class BatchMeanEncoder(Seq2SeqEncoder):
    """Normalises the embeddings by the batch mean: each example sees the others."""

    def forward(self, X, valid_lens):
        outputs, state = super().forward(X, valid_lens)
        return outputs, state - state.mean(dim=1, keepdim=True)


def gru_encoder_mixes_batch(spec):
    return broken(spec, Seq2SeqEncoder=BatchMeanEncoder)


class DetachedHandoff(Seq2SeqDecoder):
    """init_state detaches the encoder's state: values flow, gradients stop at the handoff."""

    def init_state(self, enc_all_outputs, *args):
        return tuple(t.detach() for t in super().init_state(enc_all_outputs, *args))


def gru_detached_handoff(spec):
    return broken(spec, Seq2SeqDecoder=DetachedHandoff)


class InitStateMutatesEncoderOutputs(AttentionDecoder):
    def init_state(self, enc_outputs, enc_valid_lens):
        outputs, hidden_state = enc_outputs
        outputs.tanh_()  # "normalise" the memory in place
        return super().init_state(enc_outputs, enc_valid_lens)


def bahdanau_init_state_mutates_encoder_outputs(spec):
    return broken(spec, AttentionDecoder=InitStateMutatesEncoderOutputs)


class DropoutAlwaysOn(Seq2SeqDecoder):
    """Applies dropout to the logits' inputs whatever the mode (training=True hard-coded)."""

    def forward(self, X, state):
        context, hidden_state = state
        embs = F.dropout(self.embedding(X.t()), p=0.1, training=True)
        outputs, hidden_state = self.rnn(torch.cat((embs, context.expand(embs.shape[0], -1, -1)), -1), hidden_state)
        return self.dense(outputs).swapaxes(0, 1), (context, hidden_state)


def lstm_dropout_in_eval(spec):
    return broken(spec, Seq2SeqDecoder=DropoutAlwaysOn)


class ClampingEmbedding(nn.Embedding):
    """Clamps token ids into range instead of raising, as MXNet's Embedding does."""

    def forward(self, X):
        return super().forward(X.clamp(0, self.num_embeddings - 1))


def gru_clamps_out_of_vocabulary(spec):
    return broken(spec, Embedding=ClampingEmbedding)


class ForwardIgnoresValidLengths(EncoderDecoder):
    """EncoderDecoder.forward drops *args, so the encoder reads every padded step."""

    def forward(self, enc_X, dec_X, *args):
        full = torch.full((enc_X.shape[0],), enc_X.shape[1], dtype=torch.long)
        return self.decoder(dec_X, self.decoder.init_state(self.encoder(enc_X, full), full))[0]


def lstm_forward_ignores_valid_lengths(spec):
    return broken(spec, EncoderDecoder=ForwardIgnoresValidLengths)


class ShapeLeafWithoutBatch(TransformerDecoder):
    """Keeps the positional table in the state: a leaf with no batch axis that beam search can't reorder."""

    def init_state(self, enc_outputs, enc_valid_lens):
        return (*super().init_state(enc_outputs, enc_valid_lens), self.pos_encoding.P[:8])

    def forward(self, X, state):
        logits, new_state = super().forward(X, state[:3])
        return logits, (*new_state, state[3])


def transformer_state_leaf_without_batch_axis(spec):
    return broken(spec, TransformerDecoder=ShapeLeafWithoutBatch)


class IgnoresTargetTokens(Seq2SeqDecoder):
    """Feeds a constant token instead of the target: the decoder runs blind."""

    def forward(self, X, state):
        return super().forward(torch.zeros_like(X), state)


def rnn_ignores_target_tokens(spec):
    return broken(spec, Seq2SeqDecoder=IgnoresTargetTokens)


class SqueezingDecoder(Seq2SeqDecoder):
    """Squeezes its logits, so a batch of one loses its batch axis (B=1 -> (T, V))."""

    def forward(self, X, state):
        logits, state = super().forward(X, state)
        return logits.squeeze(0) if logits.shape[0] == 1 else logits, state


def gru_squeezes_batch_of_one(spec):
    return broken(spec, Seq2SeqDecoder=SqueezingDecoder)


class Float32Logits(Seq2SeqDecoder):
    """Casts its logits to float32 whatever the model's dtype (a hard-coded `.float()`)."""

    def forward(self, X, state):
        logits, state = super().forward(X, state)
        return logits.float(), state


def gru_always_float32_logits(spec):
    return broken(spec, Seq2SeqDecoder=Float32Logits)


class EncoderReturnsTable(Seq2SeqEncoder):
    """Returns its embedding table beside its outputs: an encoder output with no batch axis."""

    def forward(self, X, valid_lens):
        return (*super().forward(X, valid_lens), self.embedding.weight)


class DecoderSkipsTable(Seq2SeqDecoder):
    def init_state(self, enc_all_outputs, *args):
        return super().init_state(enc_all_outputs[:2], *args)


def lstm_encoder_output_without_batch_axis(spec):
    return broken(spec, Seq2SeqEncoder=EncoderReturnsTable, Seq2SeqDecoder=DecoderSkipsTable)


def object_cache_updated_in_place(spec):
    """Hugging Face's DynamicCache: the first step creates the cache object, later steps append to it in
    place. A bug of tests/tricky's correct object-cache model (which imports this module, hence here)."""
    from tests.tricky.torch_models import KeyValueCache, ObjectCacheDecoder

    class CacheUpdatedInPlace(ObjectCacheDecoder):
        def forward(self, X, state):
            enc_mask, cross_kv, cache = state
            logits, (_, _, present) = TransformerDecoder.forward(self, X, (enc_mask, cross_kv, self.past(cache, X)))
            if cache is None:
                return logits, (enc_mask, cross_kv, KeyValueCache(present))
            cache.layers = tuple(present)
            return logits, state

    return broken(spec, TransformerDecoder=CacheUpdatedInPlace)


# --- One cause, several contracts: what a finding must trace to its cause (conformance/findings.py)


class LeakyFloat64Backward(torch.autograd.Function):
    """Identity forward. Backward adds a tenth of the sum over time of the incoming gradient to every step,
    in float64 only: a fused kernel whose float64 backward is wrong. Earlier steps' gradients then depend
    on later steps."""

    @staticmethod
    def forward(ctx, outputs):
        return outputs.view_as(outputs)

    @staticmethod
    def backward(ctx, grad):
        return grad + 0.1 * grad.sum(0, keepdim=True) if grad.dtype == torch.float64 else grad


class WrongFloat64Gradients(Seq2SeqDecoder):
    """A causal recurrent decoder whose logits are right and whose float64 gradients are not: caught by the
    finite-difference check of the encoder's gradient; the causality of gradients cannot be judged."""

    def forward(self, X, state):
        context, hidden_state = state
        embs = self.input_embeddings(X)
        outputs, hidden_state = self.rnn(torch.cat((embs, context.expand(embs.shape[0], -1, -1)), -1), hidden_state)
        return self.dense(LeakyFloat64Backward.apply(outputs)).swapaxes(0, 1), (context, hidden_state)

    def input_embeddings(self, X):
        return self.embedding(X.t())


def gru_wrong_float64_gradients(spec):
    return broken(spec, Seq2SeqDecoder=WrongFloat64Gradients)


class PeeksAhead(WrongFloat64Gradients):
    """The same, and each step also sees the next target token (the last one sees itself): not causal, a
    second bug of its own."""

    def input_embeddings(self, X):
        return self.embedding(X.t()) + self.embedding(torch.cat([X[:, 1:], X[:, -1:]], 1).t())


def gru_wrong_float64_gradients_peeks_ahead(spec):
    return broken(spec, Seq2SeqDecoder=PeeksAhead)


class PositionsFromZeroLeafWithoutBatch(ShapeLeafWithoutBatch, PositionsFromZero):
    """Positions that restart at every call, and a state leaf beam search cannot reorder: two causes."""


def transformer_positions_from_zero_state_leaf_without_batch_axis(spec):
    return broken(spec, TransformerDecoder=PositionsFromZeroLeafWithoutBatch)


def gru_float32_logits_reads_padding(spec):
    """float64 unusable (its logits come back as float32) and an encoder that reads padding: two causes."""
    return broken(spec, Seq2SeqDecoder=Float32Logits, Seq2SeqEncoder=PaddedEncoder)


START = 2  # BART's decoder start id (tests/tricky's start_id_declared)


class StartNotCached(TransformerDecoder):
    """Run alone on a fresh state, the start token gives logits but is left out of the state returned, as
    if the start were implied: the next token goes to position 0 with no start to attend to. Teacher
    forcing, which feeds the start with the rest, is right."""

    def forward(self, X, state):
        logits, new_state = super().forward(X, state)
        fresh = state[2][0][0].shape[2] == 0
        return logits, (state if fresh and X.shape[1] == 1 and bool((X[:, 0] == START).all()) else new_state)


def start_id_not_cached(spec):
    """Declared, the suite starts every decode from id 2 and catches it."""
    return Declared(broken(spec, TransformerDecoder=StartNotCached), reserved_tgt_ids=(0, 1), start_tgt_id=START)


def start_id_not_cached_undeclared(spec):
    """The start id only reserved, as a model could declare it before: never fed, the bug never shows."""
    return Declared(broken(spec, TransformerDecoder=StartNotCached), reserved_tgt_ids=(0, 1, START))


def one_token_per_call_cache_updated_in_place(spec):
    """OpenNMT-py's one-token-per-call decoder, declared, with its cache list updated in place: decoding one
    token at a time, the state-reuse contracts still see it."""
    from tests.tricky.torch_models import OneTokenPerStep

    class InPlaceCacheOneToken(OneTokenPerStep):
        def init_state(self, enc_outputs, enc_valid_lens):
            enc_mask, cross_kv, cache = super().init_state(enc_outputs, enc_valid_lens)
            return [enc_mask, cross_kv, list(cache)]

        def forward(self, X, state):
            logits, (_, _, new_cache) = super().forward(X, state)
            state[2][:] = new_cache
            return logits, state

    return Declared(broken(spec, TransformerDecoder=InPlaceCacheOneToken), tokens_per_call=1)


# --- Other mathematics than the specification's, consistent in itself ------------------------
# Only the cross-framework contracts can see these: every other contract compares a model with itself.


def query_projection_transposed(name, value, spec):
    """A Keras kernel is (in, out); a converter that copied one attention kernel without transposing."""
    return value.T if name.endswith("attention.W_q.weight") else value


transformer_query_projection_transposed = converted(make_model, load_canonical, query_projection_transposed)


class PreNormEncoderBlock(TransformerEncoderBlock):
    """X + sublayer(norm(X)) (pre-norm) where the specification has norm(X + sublayer(X)) (post-norm)."""

    def forward(self, X, mask):
        X = X + self.attention(self.addnorm1.ln(X), mask)[0]
        return X + self.ffn(self.addnorm2.ln(X))


class PreNormDecoderBlock(TransformerDecoderBlock):
    def forward(self, X, past, cross_kv, enc_mask):
        Y, present = self.self_attention(self.addnorm1.ln(X), causal_mask(X.shape[1], past[0].shape[2], X.device), past)
        X = X + Y
        X = X + self.cross_attention(self.addnorm2.ln(X), cross_kv, enc_mask)
        return X + self.ffn(self.addnorm3.ln(X)), present


@declares_canonical_weights
def transformer_pre_norm(spec):
    return broken(spec, TransformerEncoderBlock=PreNormEncoderBlock, TransformerDecoderBlock=PreNormDecoderBlock)


# --- Sources that are not token ids (tests/broken/common.py: SOURCE_BUGS) ----------------------


def speech(spec, **classes):
    """The speech reference with `classes` re-classed, declaring its encoder lengths as the reference does."""
    return Declared(broken(spec, **classes), encoder_lengths=speech_encoder_lengths)


class LengthsFromPaddedWidth(SpeechEncoder):
    def forward(self, X, valid_lens):
        frames = X.shape[1]
        X, _ = self.subsampling(X, valid_lens)
        lengths = (valid_lens * X.shape[1] + frames - 1) // frames  # ceil(L * positions / padded frames)
        X = self.pos_encoding(X * math.sqrt(self.num_hiddens))
        mask = key_mask(lengths, X.shape[1])
        for blk in self.blks:
            X = blk(X, mask)
        return X, lengths


def speech_lengths_from_padded_width(spec):
    return speech(spec, SpeechEncoder=LengthsFromPaddedWidth)


class UnmaskedSubsampling(ConvSubsampling):
    def forward(self, X, valid_lens):
        X = X.transpose(1, 2)
        for conv in self:
            X = F.relu(conv(X))  # padded frames are read as they are
            valid_lens = (valid_lens - 1) // 2 + 1
        return X.transpose(1, 2), valid_lens


def speech_convolution_reads_padding(spec):
    return speech(spec, ConvSubsampling=UnmaskedSubsampling)


class NormalisedOverPaddedTime(SpeechEncoder):
    def forward(self, X, valid_lens):
        mean, std = X.mean(dim=1, keepdim=True), X.std(dim=1, keepdim=True, unbiased=False)
        return super().forward((X - mean) / (std + 1e-5), valid_lens)


def speech_normalises_over_padded_time(spec):
    return speech(spec, SpeechEncoder=NormalisedOverPaddedTime)


class CrossAttentionOverEveryPosition(SpeechDecoder):
    def memory(self, enc_outputs, enc_valid_lens):
        memory, lengths = enc_outputs
        return memory, torch.full_like(lengths, memory.shape[1])


def speech_cross_attention_ignores_lengths(spec):
    return speech(spec, SpeechDecoder=CrossAttentionOverEveryPosition)


class LeaksOnePaddedFrame(ConvSubsampling):
    def forward(self, X, valid_lens):
        X = X.transpose(1, 2)
        for conv in self:
            t = torch.arange(X.shape[2], device=X.device)
            # 1 within the length, 1e-6 at the first frame past it (`<=` where `<` was meant, then damped), 0 beyond.
            keep = (t < valid_lens[:, None]).to(X.dtype) + 1e-6 * (t == valid_lens[:, None]).to(X.dtype)
            X = F.relu(conv(X * keep[:, None, :]))
            valid_lens = (valid_lens - 1) // 2 + 1
        return X.transpose(1, 2), valid_lens


def speech_leaks_one_padded_frame_at_a_millionth(spec):
    return speech(spec, ConvSubsampling=LeaksOnePaddedFrame)


class NormalisedOverTheBatch(SpeechEncoder):
    def forward(self, X, valid_lens):
        within = (torch.arange(X.shape[1], device=X.device) < valid_lens[:, None])[..., None].to(X.dtype)
        count = within.sum()
        mean = (X * within).sum((0, 1)) / count  # over every valid frame of every utterance in the batch
        std = (((X - mean) * within) ** 2).sum((0, 1)).div(count).sqrt()
        return super().forward((X - mean) / (std + 1e-5), valid_lens)


def speech_normalises_over_the_batch(spec):
    return speech(spec, SpeechEncoder=NormalisedOverTheBatch)


def speech_declares_floor_encoder_lengths(spec):
    return Declared(make_model(spec), encoder_lengths=lambda lengths: lengths // 4)


class CropsFeatures(SpeechEncoder):
    def forward(self, X, valid_lens):
        features = self.subsampling[0].in_channels
        return super().forward(F.pad(X[..., :features], (0, max(0, features - X.shape[-1]))), valid_lens)


def speech_crops_features(spec):
    return speech(spec, SpeechEncoder=CropsFeatures)


class CropsChannels(CaptioningEncoder):
    def forward(self, X):
        channels = self.cnn[0].conv.in_channels
        return super().forward(F.pad(X[:, :channels], (0, 0, 0, 0, 0, max(0, channels - X.shape[1]))))


def captioning_crops_channels(spec):
    return broken(spec, CaptioningEncoder=CropsChannels)


class BatchStatisticsNorm(nn.BatchNorm2d):
    def forward(self, X):
        return F.batch_norm(X, None, None, self.weight, self.bias, training=True, eps=self.eps)


def captioning_batch_statistics_in_eval(spec):
    return broken(spec, BatchNorm2d=BatchStatisticsNorm)


class KeepsBatchNormTraining(CaptioningEncoder):
    """`train(False)` (what `.eval()` calls) forgets its BatchNorm layers, as a "freeze" override can."""

    def train(self, mode=True):
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.training = True
        return self


def captioning_batchnorm_in_training_mode(spec):
    model = broken(spec, CaptioningEncoder=KeepsBatchNormTraining)
    return model.eval()


class CountsCalls(TransformerDecoder):
    def forward(self, X, state):
        self.calls += 1
        return super().forward(X, state)


def transformer_counts_calls_in_a_buffer(spec):
    model = broken(spec, TransformerDecoder=CountsCalls)
    model.decoder.register_buffer("calls", torch.zeros((), dtype=torch.long))
    return model


# --- Faults the harness must report as one line per contract (not contract bugs) -----------


class NaNLogits(Seq2SeqDecoder):
    def forward(self, X, state):
        logits, state = super().forward(X, state)
        return logits * torch.nan, state


class TimeMajorLogits(Seq2SeqDecoder):
    def forward(self, X, state):
        logits, state = super().forward(X, state)
        return logits.transpose(0, 1), state


class RaisesInInitState(Seq2SeqDecoder):
    def init_state(self, enc_all_outputs, *args):
        raise RuntimeError("decoder cache was never allocated")


nan_logits, time_major_logits, raises_in_init_state, declines_transformer = fault_factories(
    broken, make_model, NaNLogits, TimeMajorLogits, RaisesInInitState
)


# Every contract that runs a batch of one (an example decoded alone is one too).
BATCH_OF_ONE = AUTOREGRESSIVE | {
    "logits_shape", "state_leaves_have_batch_axis", "forward_chains_encoder_and_decoder", "outputs_depend_on_source",
    "init_state_keeps_encoder_outputs", "decode_twice_from_same_state", "decode_does_not_mutate_state",
    "reordered_state_decodes_reordered_examples",
    "eval_calls_agree_exactly", "extra_padding_changes_nothing", "example_alone_equals_example_in_batch"}

CASES = [
    ("transformer_query_projection_transposed", "transformer", CROSS_FRAMEWORK),
    ("transformer_pre_norm", "transformer", CROSS_FRAMEWORK),
    ("gru_squeezes_batch_of_one", "gru", BATCH_OF_ONE),
    ("gru_always_float32_logits", "gru", {"logits_dtype_follows_spec"}),  # the rest run at float32 tolerances
    ("lstm_encoder_output_without_batch_axis", "lstm", {"encoder_outputs_have_batch_axis"}),
    ("transformer_positions_from_zero", "transformer", AUTOREGRESSIVE),
    ("transformer_top_left_mask", "transformer", AUTOREGRESSIVE),
    ("transformer_cached_attention_off_by_1e5", "transformer", AUTOREGRESSIVE),
    ("transformer_without_causal_mask", "transformer", AUTOREGRESSIVE | {
        "future_tokens_do_not_change_past_logits", "future_tokens_do_not_change_past_gradients"}),
    ("transformer_state_leaf_without_batch_axis", "transformer", {
        "state_leaves_have_batch_axis", "reordered_state_decodes_reordered_examples"}),
    ("gru_encoder_reads_padding", "gru", PADDING),
    ("gru_encoder_mixes_batch", "gru", {  # with one example, subtracting the batch mean erases the source
        "example_alone_equals_example_in_batch", "outputs_depend_on_source"}),
    ("gru_detached_handoff", "gru", {"encoder_gradient_through_state"}),
    ("gru_clamps_out_of_vocabulary", "gru", OUT_OF_VOCABULARY),
    ("rnn_decoder_mutates_state", "rnn", AUTOREGRESSIVE | {
        "decode_does_not_mutate_state", "decode_twice_from_same_state", "init_state_keeps_encoder_outputs",
        # autograd refuses the in-place write
        "encoder_gradient_through_state", "future_tokens_do_not_change_past_gradients"}),
    ("rnn_ignores_target_tokens", "rnn", {
        "changed_token_changes_its_own_logits", "out_of_vocabulary_target_raises"}),
    ("bahdanau_state_on_module", "bahdanau", CACHE_BUG),  # a reordered state leaves the module's memory behind
    ("object_cache_updated_in_place", "transformer", {"decode_does_not_mutate_state", "decode_twice_from_same_state"}),
    ("bahdanau_init_state_mutates_encoder_outputs", "bahdanau", {"init_state_keeps_encoder_outputs"}),
    ("lstm_forward_ignores_valid_lengths", "lstm", {"forward_chains_encoder_and_decoder"}),
    ("lstm_dropout_in_eval", "lstm", CACHE_BUG | PADDING | {  # randomness breaks every comparison
        "eval_calls_agree_exactly", "decode_twice_from_same_state", "example_alone_equals_example_in_batch",
        "forward_chains_encoder_and_decoder", "encoder_gradient_through_state",
        "future_tokens_do_not_change_past_logits", "future_tokens_do_not_change_past_gradients"}),
    # Causes the findings trace (tests/test_findings.py): each fails exactly these.
    ("gru_wrong_float64_gradients", "gru", GRADIENTS),
    ("gru_wrong_float64_gradients_peeks_ahead", "gru", GRADIENTS | AUTOREGRESSIVE | {"future_tokens_do_not_change_past_logits"}),
    ("transformer_positions_from_zero_state_leaf_without_batch_axis", "transformer", AUTOREGRESSIVE | {
        "state_leaves_have_batch_axis", "reordered_state_decodes_reordered_examples"}),
    ("gru_float32_logits_reads_padding", "gru", PADDING | {"logits_dtype_follows_spec"}),
    ("start_id_not_cached", "transformer", {"stepwise_equals_teacher_forced", "greedy_cached_equals_recomputed"}),
    ("one_token_per_call_cache_updated_in_place", "transformer", {"decode_does_not_mutate_state", "decode_twice_from_same_state"}),
    *source_cases(sys.modules[__name__]),
]
