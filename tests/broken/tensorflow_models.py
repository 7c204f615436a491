"""Deliberately broken TensorFlow (Keras 3) models. Each re-classes one layer of the reference and breaks one thing.

`CASES` at the bottom lists (factory, family, contracts expected to fail): exactly those fail,
and every other contract passes. Most bugs here are ones Keras makes easy: its MultiHeadAttention
aligns a causal mask top-left, `Embedding(mask_zero=True)` masks by token id rather than by
length, `ops.take` wraps negative ids around, generation code likes to keep caches in
variables it assigns to, `padding="same"` pads an even width on one side only, and fine-tuning
recipes call BatchNorm with `training=True`.
"""
import math

import keras
import tensorflow as tf

from conformance.spec import Declared
from impls import conv_lengths, speech_encoder_lengths
from impls.tensorflow import make_model
from impls.tensorflow.canonical import load_canonical
from impls.tensorflow.captioning import CaptioningEncoder, ConvBlock
from impls.tensorflow.recurrent import Seq2SeqDecoder, Seq2SeqEncoder
from impls.tensorflow.speech import SpeechEncoder, zero_beyond
from impls.tensorflow.transformer import TransformerDecoder, TransformerDecoderBlock
from tests.broken.common import (
    AUTOREGRESSIVE, CROSS_FRAMEWORK, PADDING, OUT_OF_VOCABULARY, SOURCE_BUGS, converted, fault_factories,
    reset_and_update_rows_swapped)


def layers(layer, seen=None):
    """`layer` and every layer reachable from its attributes, each once."""
    seen = set() if seen is None else seen
    if id(layer) in seen:
        return
    seen.add(id(layer))
    yield layer
    for value in vars(layer).values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, keras.layers.Layer):
                yield from layers(item, seen)


def broken(spec, **classes):
    """The reference model for `spec`, built, with every layer of class C re-classed to classes[C]."""
    model = make_model(spec)
    for layer in list(layers(model)):
        if type(layer).__name__ in classes:
            layer.__class__ = classes[type(layer).__name__]
    return model


# --- Transformer cache and positions --------------------------------------------------------


class PositionsIgnoreCache(TransformerDecoder):
    """Positions restart at 0 on every call, as in d2l's own TransformerDecoder when predicting.
    A teacher-forced pass is right; every step or chunk after the first is at the wrong position,
    so the stepwise, chunked and greedy contracts (and decoding on from a reordered state) catch it."""

    def call(self, X, state):
        enc_mask, cross_kv, cache = state
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens), start=0)
        new_cache = []
        for blk, past, kv in zip(self.blks, cache, cross_kv):
            X, present = blk(X, past, kv, enc_mask)
            new_cache.append(present)
        return self.dense(X), (enc_mask, cross_kv, tuple(new_cache))


def transformer_positions_ignore_cache(spec):
    return broken(spec, TransformerDecoder=PositionsIgnoreCache)


class TopLeftCausalMaskBlock(TransformerDecoderBlock):
    """The causal mask of keras.layers.MultiHeadAttention(use_causal_mask=True): aligned top-left,
    query i sees keys 0..i, also when the keys begin with a cache of earlier steps. A step after the
    cache then sees only the first token; caught by the stepwise, chunked and greedy contracts."""

    def call(self, X, past, cross_kv, enc_mask):
        num_queries = tf.shape(X)[1]
        num_keys = tf.shape(past[0])[2] + num_queries
        attn_mask = tf.cast(tf.linalg.band_part(tf.ones((num_queries, num_keys)), -1, 0), tf.bool)
        Y, present = self.self_attention(X, attn_mask, past=past)
        Y = self.addnorm1(X, Y)
        Z = self.addnorm2(Y, self.cross_attention(Y, cross_kv, enc_mask))
        return self.addnorm3(Z, self.ffn(Z)), present


def transformer_top_left_causal_mask(spec):
    return broken(spec, TransformerDecoderBlock=TopLeftCausalMaskBlock)


# --- Padding, embedding, state --------------------------------------------------------------


class MasksTokenZero(Seq2SeqEncoder):
    """Masks the source by token id, the `Embedding(mask_zero=True)` idiom, instead of by valid length:
    padding that is not token 0 is read, and a real token 0 is skipped. Caught by the padding contracts."""

    def call(self, X, valid_lens):
        outputs, *state = self.rnn(self.embedding(X), mask=tf.not_equal(X, 0))
        return outputs, state


def gru_encoder_masks_token_zero(spec):
    return broken(spec, Seq2SeqEncoder=MasksTokenZero)


class TakeEmbedding(keras.layers.Embedding):
    """Keras' own Embedding: `ops.take` wraps a negative id around to the end of the table instead of
    raising (an id >= vocab size still raises on CPU). Caught by both out-of-vocabulary contracts."""


def lstm_embedding_wraps_negative_ids(spec):
    return broken(spec, Embedding=TakeEmbedding)


class VariableState(Seq2SeqDecoder):
    """Keeps the hidden state in tf.Variables and assigns each new state into them, as generation code
    with a preallocated cache does: the caller's state changes under it. Caught by the state reuse
    contracts; variables created in init_state also cut the encoder off from the gradient, and a state
    rebuilt by from_numpy holds tensors, which cannot be assigned to."""

    def init_state(self, enc_all_outputs, *args):
        context, hidden_state = super().init_state(enc_all_outputs, *args)
        return context, tf.nest.map_structure(tf.Variable, hidden_state)

    def call(self, X, state):
        logits, (context, hidden_state) = super().call(X, state)
        for variable, value in zip(tf.nest.flatten(state[1]), tf.nest.flatten(hidden_state)):
            variable.assign(value)
        return logits, (context, state[1])


def rnn_decoder_assigns_variable_state(spec):
    return broken(spec, Seq2SeqDecoder=VariableState)


class StopGradientHandoff(Seq2SeqDecoder):
    """init_state wraps the encoder's state in tf.stop_gradient: values flow, gradients stop at the
    handoff and the encoder's come back as zeros. Caught by the encoder gradient contract."""

    def init_state(self, enc_all_outputs, *args):
        return tf.nest.map_structure(tf.stop_gradient, super().init_state(enc_all_outputs, *args))


def gru_stop_gradient_handoff(spec):
    return broken(spec, Seq2SeqDecoder=StopGradientHandoff)


# --- Faults the harness must report as one line per contract (not contract bugs) -----------


class NaNLogits(Seq2SeqDecoder):
    def call(self, X, state):
        logits, state = super().call(X, state)
        return logits * float("nan"), state


class TimeMajorLogits(Seq2SeqDecoder):
    def call(self, X, state):
        logits, state = super().call(X, state)
        return tf.transpose(logits, [1, 0, 2]), state


class RaisesInInitState(Seq2SeqDecoder):
    def init_state(self, enc_all_outputs, *args):
        raise RuntimeError("decoder cache was never allocated")


nan_logits, time_major_logits, raises_in_init_state, declines_transformer = fault_factories(
    broken, make_model, NaNLogits, TimeMajorLogits, RaisesInInitState
)


class Float64Logits(Seq2SeqDecoder):
    def call(self, X, state):
        logits, state = super().call(X, state)
        return tf.cast(logits, tf.float64), state


def float32_build_float64_logits(spec):
    """Built in float32 whatever spec.dtype says, with logits cast to float64: the bridge declines it
    for float64 (its weights are float32) and the float32 model returns float64 logits. Usable in
    neither dtype, so every contract is an error, not a skip."""
    return broken(spec.replace(dtype="float32"), Seq2SeqDecoder=Float64Logits)



# --- Sources that are not token ids (tests/broken/common.py: SOURCE_BUGS) ----------------------


class BatchNormAlwaysTraining(ConvBlock):
    """`self.norm(X, training=True)`, as fine-tuning recipes write to let BatchNorm adapt to new images:
    Keras then normalises with the batch's statistics whatever the call says, and assigns its moving
    statistics on every call, inference included. Caught as an image that differs alone and in a batch,
    and as an evaluation call that changes the model."""

    def call(self, X):
        return tf.nn.relu(self.norm(self.conv(tf.pad(X, [[0, 0], [1, 1], [1, 1], [0, 0]])), training=True))


def captioning_batchnorm_in_training_mode(spec):
    return broken(spec, ConvBlock=BatchNormAlwaysTraining)


class SamePaddedSubsampling(SpeechEncoder):
    """Conv1D(padding="same"), as Keras users write a stride-2 convolution: TensorFlow's SAME pads an odd
    width on both sides but an even one on the right only, so the frames an output position reads depend
    on the parity of the width the batch is padded to. Padded frames are still zeroed and the lengths are
    right: only another padded width shows it (1 to 8 extra frames, the extra padding contract's)."""

    def subsample(self, X, valid_lens):
        for conv in self.subsampling:
            X = tf.nn.relu(tf.nn.conv1d(zero_beyond(X, valid_lens), conv.kernel, 2, "SAME") + conv.bias)
            valid_lens = conv_lengths(valid_lens)
        return X, valid_lens


def speech_same_padding_depends_on_width(spec):
    return Declared(broken(spec, SpeechEncoder=SamePaddedSubsampling), encoder_lengths=speech_encoder_lengths)


def speech_declares_floor_encoder_lengths(spec):
    """The reference, declaring L // 4 encoder positions where its two stride-2 convolutions give
    ceil(L / 4): one position short at every length that is not a multiple of 4."""
    return Declared(make_model(spec), encoder_lengths=lambda lengths: lengths // 4)


class CropsChannels(CaptioningEncoder):
    """Reads the first `channels` channels of whatever image it is given, zero-padding fewer: an RGBA or a
    grey image is taken silently instead of refused. Caught by the wrong source size contract only."""

    def call(self, X):
        # In tensor ops, not Python ints: the bridge traces a hot call with the channel count unknown.
        fewer = tf.maximum(0, self.channels - tf.shape(X)[1])
        X = tf.pad(X[:, : self.channels], [[0, 0], [0, fewer], [0, 0], [0, 0]])
        return super().call(tf.ensure_shape(X, [None, self.channels, None, None]))


def captioning_crops_channels(spec):
    return broken(spec, CaptioningEncoder=CropsChannels)


# A converter from canonical weights that copies GRU rows (reset, update, new) into Keras' slots
# (update, reset, new) as they are: a model consistent in itself, which only the cross-framework
# contracts can tell from the specification.
gru_gate_order_not_converted = converted(make_model, load_canonical, reset_and_update_rows_swapped)

CASES = [
    ("gru_gate_order_not_converted", "gru", CROSS_FRAMEWORK),
    ("transformer_positions_ignore_cache", "transformer", AUTOREGRESSIVE),
    ("transformer_top_left_causal_mask", "transformer", AUTOREGRESSIVE),
    ("gru_encoder_masks_token_zero", "gru", PADDING),
    ("lstm_embedding_wraps_negative_ids", "lstm", OUT_OF_VOCABULARY),
    ("rnn_decoder_assigns_variable_state", "rnn", {
        "decode_does_not_mutate_state", "decode_twice_from_same_state",
        "reordered_state_decodes_reordered_examples",  # from_numpy gives tensors, which have no .assign
        "encoder_gradient_through_state"}),  # tf.Variable(initial_value) passes no gradient back
    ("gru_stop_gradient_handoff", "gru", {"encoder_gradient_through_state"}),
    ("captioning_batchnorm_in_training_mode", *SOURCE_BUGS["captioning_batchnorm_in_training_mode"]),
    # Example 0 fills its batch, so alone it has the batch's width: only another padded width shows it.
    ("speech_same_padding_depends_on_width", "speech", {"extra_padding_changes_nothing"}),
    ("speech_declares_floor_encoder_lengths", *SOURCE_BUGS["speech_declares_floor_encoder_lengths"]),
    ("captioning_crops_channels", *SOURCE_BUGS["captioning_crops_channels"]),
]
