"""Deliberately broken MXNet models. Each re-classes one block of the reference and breaks one thing.

`CASES` at the bottom lists (factory, family, contracts expected to fail): exactly those fail,
and every other contract passes. Most bugs here are ones MXNet 1.9.1 makes easy: its fused RNN
operator ignores sequence lengths on CPU (float32) and drops out under
autograd.record(train_mode=False), np.where with a scalar branch passes no gradient, its
Embedding accepts any id, and d2l's MXNet Transformer keeps its cache in a list it updates in place.
"""
import math

from conformance.compat import import_mxnet
from conformance.spec import Unsupported
from impls.mxnet import make_model
from impls.mxnet.attention import AdditiveAttention
from impls.mxnet.captioning import CaptioningEncoder
from impls.mxnet.d2l import TokenEmbedding
from impls.mxnet.factory import hybridize
from impls.mxnet.recurrent import Seq2SeqDecoder, Seq2SeqEncoder
from impls.mxnet.transformer import PositionalEncoding, SelfAttention, TransformerDecoder, split_heads
from tests.broken.common import AUTOREGRESSIVE, BATCH_DEPENDENT, GRADIENTS, PADDING, fault_factories

mx = import_mxnet()
from mxnet import autograd, np, npx  # noqa: E402
from mxnet.gluon import nn  # noqa: E402


def blocks(block):
    yield block
    for child in block._children.values():
        yield from blocks(child)


def broken(spec, **classes):
    """The reference model for `spec`, with every block of class C re-classed to classes[C]."""
    model = make_model(spec)
    for block in blocks(model):
        if type(block).__name__ in classes:
            block.__class__ = classes[type(block).__name__]
    hybridize(model, spec)  # rebuilds the graphs cached from the reference classes
    return model


def fused_rnn(stack, inputs, state, valid_lens=None, dropout=0.0):
    """Runs MXNet's fused RNN operator with the weights of a reference `StackedCells`.

    The fused operator takes every i2h/h2h weight, then every bias, flattened into one vector; its
    GRU gates come in the reference cells' order (r, z, n), so the result is the same GRU.
    """
    cells = list(stack.cells)
    weights = [d.weight.data() for c in cells for d in (c.i2h, c.h2h)]
    biases = [d.bias.data() for c in cells for d in (c.i2h, c.h2h)]
    params = np.concatenate([p.reshape(-1) for p in weights + biases])
    extra = [valid_lens] if valid_lens is not None else []
    outputs, state = npx.rnn(
        inputs, params, state, *extra, use_sequence_length=valid_lens is not None, mode="gru",
        state_size=stack.num_hiddens, num_layers=stack.num_layers, p=dropout, state_outputs=True,
    )
    return outputs, state


# --- Transformer cache and positions --------------------------------------------------------


class CacheKeepsLastStep(SelfAttention):
    """Attends over past + new keys, but hands back only the new ones as the cache: each call
    forgets all but the previous call's tokens (and, the cache length being the next position,
    positions stop advancing). Caught by the autoregressive contracts."""

    def hybrid_forward(self, F, X, mask, past_k=None, past_v=None):
        if past_k is None:  # the encoder's self-attention has no cache to get wrong
            return super().hybrid_forward(F, X, mask)
        q, new_k, new_v = (split_heads(F, Z, self.num_heads) for Z in F.np.split(self.W_qkv(X), 3, axis=-1))
        k, v = F.np.concatenate((past_k, new_k), axis=2), F.np.concatenate((past_v, new_v), axis=2)
        return self.attend(F, q, k, v, mask), new_k, new_v


def transformer_cache_keeps_last_step(spec):
    return broken(spec, SelfAttention=CacheKeepsLastStep)


class PositionsIgnoreCache(PositionalEncoding):
    """Every decode call starts at position 0, whatever the cache holds: stepwise decoding puts
    every token at position 0. Caught by the autoregressive contracts."""

    def forward(self, X, start=0):
        return super().forward(X, 0)


def transformer_positions_ignore_cache(spec):
    return broken(spec, PositionalEncoding=PositionsIgnoreCache)


class ScalarMaskAttention(AdditiveAttention):
    """Masks the scores with np.where(mask, scores, -inf) and a scalar -inf, as one would in NumPy.
    The values are right, but MXNet 1.9.1 passes no gradient through that form of `where`: the
    attention scores get none, so neither do W_q, w_v, nor the encoder along that path. Caught by
    the finite-difference check of the encoder's gradient."""

    def hybrid_forward(self, F, query, projected_keys, values, mask):
        features = F.np.tanh(F.np.expand_dims(self.W_q(query), 1) + projected_keys)
        scores = F.np.where(mask, F.np.squeeze(self.w_v(features), -1), -math.inf)
        weights = self.dropout(F.npx.softmax(scores, axis=-1))
        return F.np.squeeze(F.np.matmul(F.np.expand_dims(weights, 1), values), 1)


def bahdanau_mask_drops_gradient(spec):
    return broken(spec, AdditiveAttention=ScalarMaskAttention)


# --- Padding, vocabulary, state -------------------------------------------------------------


class TrustsSequenceLength(Seq2SeqEncoder):
    """Hands the valid lengths to the fused RNN operator (use_sequence_length=True, as
    gluon.rnn.GRU offers), which on CPU ignores them: the final state has read the padding.
    Caught by the padding contracts (at float32 tolerances: on CPU the operator takes sequence
    lengths in float32 only, so the factory declines float64)."""

    def forward(self, X, valid_lens):
        embs = self.embedding(X.T)
        state = self.rnn.begin_state(X.shape[0], embs.dtype, embs.ctx)
        outputs, state = fused_rnn(self.rnn, embs, state, valid_lens.astype(embs.dtype))
        return outputs, state


def gru_trusts_sequence_length(spec):
    if spec.dtype == "float64":
        raise Unsupported("MXNet's fused RNN operator takes sequence lengths in float64 only with cuDNN")
    return broken(spec, Seq2SeqEncoder=TrustsSequenceLength)


class UncheckedEmbedding(TokenEmbedding):
    """Plain nn.Embedding: an out-of-vocabulary id silently reads some row. Caught by the
    out-of-vocabulary contracts."""

    def forward(self, X):
        return nn.Embedding.forward(self, X)


def gru_unchecked_embedding(spec):
    return broken(spec, TokenEmbedding=UncheckedEmbedding)


class CacheUpdatedInPlace(TransformerDecoder):
    """Keeps its state in lists and stores the new cache into the one it was given, as d2l's MXNet
    TransformerDecoderBlock does (`state[2][self.i] = key_values`): decoding from a state changes
    it. Caught by the state-reuse contracts."""

    def init_state(self, enc_outputs, enc_valid_lens):
        enc_mask, cross_kv, cache = super().init_state(enc_outputs, enc_valid_lens)
        return [enc_mask, cross_kv, list(cache)]

    def forward(self, X, state):
        logits, (_, _, new_cache) = super().forward(X, state)
        for i, key_values in enumerate(new_cache):
            state[2][i] = key_values
        return logits, state


def transformer_cache_updated_in_place(spec):
    return broken(spec, TransformerDecoder=CacheUpdatedInPlace)


class FusedDropoutDecoder(Seq2SeqDecoder):
    """Runs the decoder's GRU as MXNet's fused operator with inter-layer dropout p, as
    gluon.rnn.GRU(num_layers, dropout=p) does. Inference is fine, but the operator drops out
    whenever autograd records, train_mode=False included: gradients are random. Caught by the
    gradient contracts."""

    def forward(self, X, state):
        context, hidden_state = state
        embs = self.embedding(X.T)
        context = np.broadcast_to(context, (embs.shape[0], *context.shape))
        outputs, hidden_state = fused_rnn(self.rnn, np.concatenate((embs, context), -1), hidden_state, dropout=0.5)
        return self.dense(outputs).swapaxes(0, 1), (state[0], hidden_state)


def gru_fused_dropout_under_record(spec):
    return broken(spec, Seq2SeqDecoder=FusedDropoutDecoder)


# --- Sources that are not token ids (issue 17) ---------------------------------------------


class EncodesInTrainingMode(CaptioningEncoder):
    """Runs its CNN inside autograd.train_mode(), as code lifted from a training loop does: MXNet has
    no model.eval(), the mode is autograd's, so BatchNorm normalises with the batch's statistics: an
    image alone differs from the same image in a batch. MXNet moves the running statistics only in a
    backward pass in training mode, so evaluation calls leave the model unchanged (that contract
    rightly passes), and the gradient recorded in inference mode is that of the running statistics
    while the forward pass read the batch's. Caught by batch independence and by the encoder's
    gradient against finite differences."""

    def forward(self, X):
        with autograd.train_mode():
            return super().forward(X)


def captioning_cnn_in_autograd_train_mode(spec):
    return broken(spec, CaptioningEncoder=EncodesInTrainingMode)


# --- Faults the harness must report as one line per contract (not contract bugs) -----------


class NaNLogits(Seq2SeqDecoder):
    def forward(self, X, state):
        logits, state = super().forward(X, state)
        return logits * float("nan"), state


class TimeMajorLogits(Seq2SeqDecoder):
    def forward(self, X, state):
        logits, state = super().forward(X, state)
        return logits.swapaxes(0, 1), state


class RaisesInInitState(Seq2SeqDecoder):
    def init_state(self, enc_all_outputs, *args):
        raise RuntimeError("decoder cache was never allocated")


nan_logits, time_major_logits, raises_in_init_state, declines_transformer = fault_factories(
    broken, make_model, NaNLogits, TimeMajorLogits, RaisesInInitState
)



CASES = [
    ("transformer_cache_keeps_last_step", "transformer", AUTOREGRESSIVE),
    ("transformer_positions_ignore_cache", "transformer", AUTOREGRESSIVE),
    ("bahdanau_mask_drops_gradient", "bahdanau", {"encoder_gradient_through_state"}),
    ("gru_trusts_sequence_length", "gru", PADDING),
    ("gru_unchecked_embedding", "gru", {"out_of_vocabulary_source_raises", "out_of_vocabulary_target_raises"}),
    ("transformer_cache_updated_in_place", "transformer", {"decode_does_not_mutate_state", "decode_twice_from_same_state"}),
    ("gru_fused_dropout_under_record", "gru", GRADIENTS),
    ("captioning_cnn_in_autograd_train_mode", "captioning", BATCH_DEPENDENT | {"encoder_gradient_through_state"}),
]
