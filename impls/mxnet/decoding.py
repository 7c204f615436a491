"""Greedy decoding entry points for the benchmarks (the contract of benchmarks/backends.py).

- `encode(model, src, src_valid_len)`: the encoder alone, native outputs.
- `greedy_decode(model, src, src_valid_len, bos, steps)`: exactly `steps` greedy tokens, no early
  stop, carrying the key/value cache or recurrent state: the fastest loop we have.
- `recompute_greedy_decode(...)`: the same tokens, re-running the decoder over the whole prefix
  at every step (no cache), the baseline a cache must beat: the Transformer through
  Decoder.forward, one call per token; recurrent decoders through their step graph below.
- `stepwise_greedy_decode(...)`: the readable loop, one `Decoder.forward` call per token; the fast
  path must agree with it (tests/test_decoding_mxnet.py).

Sources are token ids, frames or images (conformance/sources.py; the valid lengths None for images).

MXNet's imperative calls cost tens of microseconds each, and `Decoder.forward` makes dozens per
token (embedding range check with a host round-trip, positions, masks, one graph per block). The
fast path runs one token as ONE cached graph, built from the decoder's own blocks (same weights),
hybridized with static_alloc/static_shape: embedding -> decoder -> logits -> argmax, with the
argmax fed straight back as the next input, so the host never waits inside the loop and the
engine runs ahead of Python. The Transformer's self-attention keys and values go to caches
preallocated for all `steps`, written in place by one slice assignment each per token.
"""
from __future__ import annotations

import math
import warnings
import weakref

import numpy as onp

from conformance.compat import import_mxnet

mx = import_mxnet()
from mxnet import autograd, np  # noqa: E402
from mxnet.ndarray.numpy import _internal as _npi  # noqa: E402  (the slice_assign operator)
from mxnet.gluon import nn  # noqa: E402

from .attention import key_mask  # noqa: E402
from .bahdanau import AttentionDecoder  # noqa: E402
from .recurrent import Seq2SeqDecoder  # noqa: E402
from .transformer import TransformerDecoder  # noqa: E402


def _ctx(model):
    params = list(model.collect_params().values())
    return params[0].list_ctx()[0] if params else mx.cpu()


def _tokens(a, ctx):
    return np.array(onp.asarray(a), dtype="int64", ctx=ctx)


def _source(src, model, ctx):
    """Token ids as int64; frames and images (conformance/sources.py) in the model's dtype."""
    src = onp.asarray(src)
    if not onp.issubdtype(src.dtype, onp.floating):
        return _tokens(src, ctx)
    params = list(model.collect_params().values())
    return np.array(src, dtype=params[0].dtype if params else src.dtype, ctx=ctx)


def _start(model, src, src_valid_len):
    """(d2l's *args: the valid lengths, or nothing for images, encoder outputs)."""
    ctx = _ctx(model)
    lengths = () if src_valid_len is None else (_tokens(src_valid_len, ctx),)
    return lengths, model.encoder(_source(src, model, ctx), *lengths)


def _bos(src, bos, ctx, shape):
    return np.full((len(src), *shape), bos, dtype="int64", ctx=ctx)


def encode(model, src, src_valid_len):
    with autograd.pause():  # inference: nothing recorded, dropout off
        return _start(model, src, src_valid_len)[1]


def stepwise_greedy_decode(model, src, src_valid_len, bos, steps):
    with autograd.pause():
        lengths, enc = _start(model, src, src_valid_len)
        state = model.decoder.init_state(enc, *lengths)
        tokens = _bos(src, bos, _ctx(model), (1,))
        out = []
        for _ in range(steps):
            logits, state = model.decoder(tokens, state)
            tokens = logits[:, -1].argmax(-1).reshape(-1, 1)
            out.append(tokens)
        return np.concatenate(out, 1).asnumpy().astype(onp.int64)


def recompute_greedy_decode(model, src, src_valid_len, bos, steps):
    stepper = _stepper(model.decoder)
    if isinstance(stepper, _RecurrentStep):
        # Its step graph re-run over the whole prefix from the initial state at every step: the
        # per-token machinery of greedy_decode, so the ratio of the two measures the carried state.
        return _fast_decode(stepper, model, src, src_valid_len, bos, steps, recompute=True)
    # The Transformer: Decoder.forward over the whole prefix, one call per token.
    with autograd.pause():
        lengths, enc = _start(model, src, src_valid_len)
        # A fresh state holds nothing decoded yet, and Decoder.forward never mutates it: reusable.
        fresh = model.decoder.init_state(enc, *lengths)
        prefix = _bos(src, bos, _ctx(model), (1,))
        for _ in range(steps):
            logits, _ = model.decoder(prefix, fresh)
            prefix = np.concatenate((prefix, logits[:, -1].argmax(-1).reshape(-1, 1)), 1)
        return prefix[:, 1:].asnumpy().astype(onp.int64)


def greedy_decode(model, src, src_valid_len, bos, steps):
    stepper = _stepper(model.decoder)
    if stepper is None:  # a decoder of no family here: the readable loop is the fast one we have
        return stepwise_greedy_decode(model, src, src_valid_len, bos, steps)
    return _fast_decode(stepper, model, src, src_valid_len, bos, steps)


def _fast_decode(stepper, model, src, src_valid_len, bos, steps, **options):
    vocab_size = model.decoder.embedding.vocab_size
    if not 0 <= bos < vocab_size:  # the step graphs skip TokenEmbedding's range check
        raise IndexError(f"token ids must lie in [0, {vocab_size}); got bos {bos}")
    with autograd.pause():
        lengths, enc = _start(model, src, src_valid_len)
        out = stepper.run(model.decoder, _bos(src, bos, _ctx(model), ()), enc, lengths, steps, **options)
        # One stack and one host copy per call: the decode loop's only wait for the engine.
        return np.stack(out, axis=1).asnumpy().astype(onp.int64)


# --- one token, one cached graph ---------------------------------------------------------------------

_STEPPERS = weakref.WeakKeyDictionary()  # decoder -> its step graph, built (and traced) once


def _stepper(decoder):
    """The step graph of a reference decoder (None for any other), built once per decoder."""
    if decoder not in _STEPPERS:
        kinds = ((TransformerDecoder, TransformerStep), (AttentionDecoder, AttentionStep), (Seq2SeqDecoder, RecurrentStep))
        step_class = next((step for kind, step in kinds if isinstance(decoder, kind)), None)
        if step_class is None:
            return None
        _STEPPERS[decoder] = step_class(decoder)  # holds the decoder's blocks, never the decoder
    return _STEPPERS[decoder]


class _Graph(nn.HybridBlock):
    """A HybridBlock over blocks of an existing decoder: its parameters are the decoder's own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._traced = False

    def compile(self):
        # static_shape: one memory plan, reused for every token of a decode.
        self.hybridize(static_alloc=True, static_shape=True)

    def hybridize(self, active=True, **kwargs):
        """This graph only. Gluon would recurse into the shared blocks, resetting the flags and
        clearing the graphs the d2l path (Decoder.forward, whose shapes change) traced with them."""
        children, self._children = self._children, {}
        try:
            super().hybridize(active, **kwargs)
        finally:
            self._children = children

    def __call__(self, *args):
        if self._traced:
            return super().__call__(*args)
        with warnings.catch_warnings():
            # Blocks used only in init_state (key projections) sit in the graph's parameter set.
            warnings.filterwarnings("ignore", "Parameter .* is not used by any computation")
            out = super().__call__(*args)
        self._traced = True
        return out


class _Step(_Graph):
    """One token: embedding -> the decoder's own layers -> logits -> argmax, fed back by `run`."""

    def __init__(self, decoder, **kwargs):
        super().__init__(**kwargs)
        self.embedding, self.dense = decoder.embedding, decoder.dense

    def embed(self, tokens):
        """The lookup without TokenEmbedding's range check (a host round-trip per call): the
        tokens fed back are argmaxes over the vocabulary, in range by construction."""
        return nn.Embedding.forward(self.embedding, tokens)


class _RecurrentStep(_Step):
    """A step graph whose state is a few arrays: tokens, *fixed inputs, *state -> tokens, *state."""

    def run(self, decoder, tokens, enc_outputs, lengths, steps, recompute=False):
        """`lengths`: d2l's *args, the source valid lengths or nothing (images)."""
        fixed, initial = self.start(decoder, enc_outputs, *lengths)
        prefix, state = [tokens], initial
        for _ in range(steps):
            if recompute:  # nothing carried over: the whole prefix again from the initial state
                state = initial
                for token in prefix:
                    predicted, *state = self(token, *fixed, *state)
            else:
                predicted, *state = self(prefix[-1], *fixed, *state)
            prefix.append(predicted)
        return prefix[1:]


class RecurrentStep(_RecurrentStep):
    """Seq2SeqDecoder: [token embedding, context] -> stacked cells -> logits -> argmax."""

    def __init__(self, decoder, **kwargs):
        super().__init__(decoder, **kwargs)
        self.rnn = decoder.rnn
        self.compile()

    def hybrid_forward(self, F, tokens, context, *hidden_state):
        x = F.np.concatenate((self.embed(tokens), context), axis=-1)
        out, *hidden_state = self.rnn(x, *hidden_state)
        return (F.np.argmax(self.dense(out), axis=-1), *hidden_state)

    def start(self, decoder, enc_outputs, *lengths):
        context, hidden_state = decoder.init_state(enc_outputs, *lengths)
        return (context,), self.rnn.as_tuple(hidden_state)


class AttentionStep(_RecurrentStep):
    """AttentionDecoder (Bahdanau, and the mixed family's): token -> attention + GRU step -> argmax."""

    def __init__(self, decoder, **kwargs):
        super().__init__(decoder, **kwargs)
        self.step = decoder.step
        self.compile()

    def hybrid_forward(self, F, tokens, memory, keys, mask, hidden_state):
        out, hidden_state = self.step(self.embed(tokens), memory, keys, mask, hidden_state)
        return F.np.argmax(self.dense(out), axis=-1), hidden_state

    def start(self, decoder, enc_outputs, *lengths):
        # memory, keys, mask; captioning's decoder takes no lengths and attends over the whole grid.
        *fixed, hidden_state = decoder.init_state(enc_outputs, *lengths)
        return fixed, (hidden_state,)


class TransformerStep(_Step):
    """TransformerDecoder, one token: the same blocks and weights as TransformerDecoder.forward,
    with the attention arithmetic laid out for a single query.

    - Self-attention reads a cache preallocated for every step. The new token's key/value are not
      in it yet when it attends (a graph cannot write its input in place), so its own score joins
      the cached keys' before the softmax; the caller writes them in after the step. Every token
      attends over all `steps` slots (unwritten ones masked): one shape, so one memory plan for
      the whole decode, at the price of a per-token cost that grows with the decode length
      (at batch 32, ~2x from 32 to 256 steps) instead of with the position.
    - Cached keys are kept transposed, (batch, heads, head_dim, steps), so scores are q K^T with
      no transpose of the cache per step (MXNet's SwapAxis copies; it cost more than the rest of
      the step at batch 32). Values stay (batch, heads, steps, head_dim): w V is a faster product
      here than V^T w^T. Each is one buffer for all blocks: two writes per token.
    - With one query, (batch, 1, heads * head_dim), (batch, heads, 1, head_dim) and
      (batch, heads, head_dim, 1) share one memory order: heads split and merge by reshapes.
    - Masks are additive -inf biases: masked_softmax's exact zeros, without a `where` (and a
      full_like) over every score.
    - No Dropout nodes: greedy_decode runs with autograd paused, where Dropout is the identity,
      yet a Dropout node still costs a copy.
    """

    def __init__(self, decoder, **kwargs):
        super().__init__(decoder, **kwargs)
        self.blks = decoder.blks
        self.position_table = decoder.pos_encoding.P  # a constant, not a parameter: fed as an input
        self.num_hiddens, self.num_heads = decoder.num_hiddens, decoder.num_heads
        self.head_dim = self.num_hiddens // self.num_heads
        self.cross_keys_values = CrossKeysValues(decoder)
        self.compile()

    def merge(self, F, X):
        return F.np.reshape(X, (-1, 1, self.num_hiddens))

    def self_attention(self, F, attention, X, past_k_t, past_v, bias):
        """X (batch, 1, d); past_k_t (batch, heads, head_dim, steps); past_v (batch, heads, steps,
        head_dim); bias (1, steps + 1): 0 for the keys written so far and its own (last), else -inf."""
        # (batch, 1, 3 d) holds q, k, v one after the other: indexing a reshape beats np.split.
        qkv = F.np.reshape(attention.W_qkv(X), (-1, 3, self.num_heads, self.head_dim, 1))
        q, k, v = qkv[:, 0] / math.sqrt(self.head_dim), qkv[:, 1], qkv[:, 2]  # (batch, heads, head_dim, 1)
        own_score = F.np.sum(q * k, axis=2, keepdims=True)  # (batch, heads, 1, 1)
        scores = F.np.concatenate((F.np.matmul(F.np.swapaxes(q, -1, -2), past_k_t), own_score), axis=-1)
        weights = F.npx.softmax(scores + bias, axis=-1)  # (batch, heads, 1, steps + 1)
        v = F.np.swapaxes(v, -1, -2)  # (batch, heads, 1, head_dim): one row, a free transpose
        # Slices from the end: the graph holds no step count, so one trace serves every decode length.
        mixed = F.np.matmul(weights[:, :, :, :-1], past_v) + weights[:, :, :, -1:] * v
        return attention.W_o(self.merge(F, mixed)), k, v

    def cross_attention(self, F, attention, X, cross_k_t, cross_v, enc_bias):
        q = F.np.reshape(attention.W_q(X), (-1, self.num_heads, 1, self.head_dim)) / math.sqrt(self.head_dim)
        weights = F.npx.softmax(F.np.matmul(q, cross_k_t) + enc_bias, axis=-1)
        return attention.W_o(self.merge(F, F.np.matmul(weights, cross_v)))

    def hybrid_forward(self, F, tokens, position, positions, self_biases, enc_bias, *caches):
        """tokens (batch,); position (1,): this token's index; positions: the encoding table;
        self_biases (steps, steps + 1): row t is step t's bias; enc_bias (batch, 1, 1, src_steps);
        caches: per block, cross k^T, cross v, past k^T, past v."""
        X = self.embed(tokens) * math.sqrt(self.num_hiddens) + F.np.take(positions, position, axis=0)
        X = F.np.expand_dims(X, 1)
        bias = F.np.take(self_biases, position, axis=0)
        new_k, new_v = [], []
        for i, blk in enumerate(self.blks):
            cross_k_t, cross_v, past_k_t, past_v = caches[4 * i : 4 * i + 4]
            Y, k, v = self.self_attention(F, blk.self_attention, X, past_k_t, past_v, bias)
            Y = blk.addnorm1.ln(X + Y)  # AddNorm without its dropout
            Z = blk.addnorm2.ln(Y + self.cross_attention(F, blk.cross_attention, Y, cross_k_t, cross_v, enc_bias))
            X = blk.addnorm3.ln(Z + blk.ffn(Z))
            new_k.append(k)
            new_v.append(v)
        logits = self.dense(F.np.squeeze(X, 1))
        # (blocks, batch, heads, head_dim, 1) and (blocks, batch, heads, 1, head_dim): the caller writes them in.
        return F.np.argmax(logits, axis=-1), position + 1, F.np.stack(new_k), F.np.stack(new_v)

    def run(self, decoder, tokens, enc_outputs, lengths, steps):
        memory, enc_valid_lens = decoder.memory(enc_outputs, *lengths)  # speech's: the subsampled lengths
        batch, ctx, dtype = tokens.shape[0], tokens.ctx, memory.dtype
        cross_kv = self.cross_keys_values(memory)
        blocks = len(self.blks)
        keys_t = np.zeros((blocks, batch, self.num_heads, self.head_dim, steps), dtype=dtype, ctx=ctx)
        values = np.zeros((blocks, batch, self.num_heads, steps, self.head_dim), dtype=dtype, ctx=ctx)
        caches = []
        for i in range(blocks):
            # keys_t[i], values[i]: views, so the graph reads the very buffers the writes go to.
            caches += [cross_kv[2 * i], cross_kv[2 * i + 1], keys_t[i], values[i]]
        positions = self.position_table[:steps].as_in_ctx(ctx).astype(dtype)
        keys = onp.arange(steps + 1)
        # Step t sees the cached keys 0..t-1 and, in the last column, its own.
        seen = (keys[None, :] < onp.arange(steps)[:, None]) | (keys == steps)
        self_biases = np.array(onp.where(seen, 0.0, -onp.inf), dtype=dtype, ctx=ctx)
        mask = key_mask(enc_valid_lens, memory.shape[1]).reshape(batch, 1, 1, -1)
        enc_bias = np.where(mask, np.zeros(mask.shape, dtype=dtype, ctx=ctx), np.full(mask.shape, -onp.inf, dtype=dtype, ctx=ctx))
        position = np.zeros((1,), dtype="int64", ctx=ctx)
        out = []
        for t in range(steps):
            tokens, position, new_k, new_v = self(tokens, position, positions, self_biases, enc_bias, *caches)
            # The operator itself: `keys_t[..., t:t+1] = new_k` spends ~2.5x as long in Python.
            _npi.slice_assign(keys_t, new_k, begin=(None,) * 4 + (t,), end=(None,) * 4 + (t + 1,), out=keys_t)
            _npi.slice_assign(values, new_v, begin=(None,) * 3 + (t,), end=(None,) * 3 + (t + 1,), out=values)
            out.append(tokens)
        return out


class CrossKeysValues(_Graph):
    """Per decode, in one graph: every block's cross-attention keys (transposed) and values.
    TransformerDecoder.init_state computes the same with np.split and SwapAxis, which in MXNet
    1.9.1 took about a third of a whole 32-step decode at batch 32."""

    def __init__(self, decoder, **kwargs):
        super().__init__(**kwargs)
        self.blks = decoder.blks
        self.num_heads, self.head_dim = decoder.num_heads, decoder.num_hiddens // decoder.num_heads
        self.compile()

    def hybrid_forward(self, F, memory):
        """memory (batch, src_steps, d) -> per block k^T (batch, heads, head_dim, src_steps) and
        v (batch, heads, src_steps, head_dim)."""
        out = []
        for blk in self.blks:
            # (batch, src_steps, 2, heads, head_dim): keys then values, as W_kv's output is split.
            kv = F.npx.reshape(blk.cross_attention.W_kv(memory), (-2, -2, 2, self.num_heads, self.head_dim))
            out += [F.np.transpose(kv[:, :, 0], (0, 2, 3, 1)), F.np.transpose(kv[:, :, 1], (0, 2, 1, 3))]
        return tuple(out)
