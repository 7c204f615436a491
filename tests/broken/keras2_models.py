"""Deliberately broken Keras 2 (tf_keras) models: the d2l-style ones of examples/keras2_d2l.py with
one layer re-classed to the way d2l's own TensorFlow code has it.

`CASES` at the bottom lists (factory, family, contracts expected to fail): exactly those fail,
and every other contract passes.
"""
import tensorflow as tf

from tests.broken.common import AUTOREGRESSIVE, PADDING
from examples.keras2_d2l import EncoderDecoder, Seq2SeqDecoder, Seq2SeqEncoder, make_model


def broken(spec, **classes):
    """The d2l-style model for `spec`, built, with every layer of class C re-classed to classes[C]."""
    model = make_model(spec)
    for layer in [model, *model.submodules]:
        if type(layer).__name__ in classes:
            layer.__class__ = classes[type(layer).__name__]
    return model


class ReadsPadding(Seq2SeqEncoder):
    """d2l's own encoder: no mask, so the final state and the last output have read the padding.
    Caught by the padding contracts."""

    def call(self, X, *args, **kwargs):
        return self.rnn(self.embedding(tf.transpose(X)), **kwargs)


def gru_encoder_reads_padding(spec):
    return broken(spec, Seq2SeqEncoder=ReadsPadding)


class ContextFromCurrentState(Seq2SeqDecoder):
    """d2l 0.17's decoder: the context is the top layer's current hidden state, not the encoder's last output,
    so it moves with every call: decoding step by step sees other contexts than one teacher-forced pass.
    Caught by the stepwise, chunked and greedy contracts."""

    def call(self, X, state, **kwargs):
        enc_output, hidden_state = state
        # The parent takes its context from the last row of what it is given as the encoder's outputs.
        logits, (_, hidden_state) = super().call(X, (hidden_state[-1][None], hidden_state), **kwargs)
        return logits, [enc_output, hidden_state]


def rnn_decoder_context_from_current_state(spec):
    return broken(spec, Seq2SeqDecoder=ContextFromCurrentState)


class TrainingAlwaysOn(EncoderDecoder):
    """d2l 1.0's EncoderDecoder.call passes training=True whatever it is called with: dropout stays on in
    a forward pass in eval mode, while the encoder and decoder called alone (training=False) are right.
    Caught by the contracts that run the whole model."""

    def call(self, enc_X, dec_X, *args, **kwargs):
        return super().call(enc_X, dec_X, *args, training=True)


def lstm_forward_always_training(spec):
    return broken(spec, EncoderDecoder=TrainingAlwaysOn)


def lstm_forward_always_training_reads_padding(spec):
    """Two of d2l's bugs at once, two causes: training always on (the whole model only) and an encoder that
    reads padding (the encoder and decoder called alone, which repeat, show it)."""
    return broken(spec, EncoderDecoder=TrainingAlwaysOn, Seq2SeqEncoder=ReadsPadding)


# Only the contracts that call the whole model see it (the encoder and decoder called alone repeat).
TRAINING_ALWAYS_ON = {"forward_chains_encoder_and_decoder", "eval_calls_agree_exactly",
                      "encoder_gradient_through_state", "future_tokens_do_not_change_past_gradients"}

CASES = [
    ("gru_encoder_reads_padding", "gru", PADDING),
    ("rnn_decoder_context_from_current_state", "rnn", AUTOREGRESSIVE),
    ("lstm_forward_always_training", "lstm", TRAINING_ALWAYS_ON),
    ("lstm_forward_always_training_reads_padding", "lstm", TRAINING_ALWAYS_ON | PADDING),
]
