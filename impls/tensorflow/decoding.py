"""Greedy decoding entry points for the benchmarks (TensorFlow / Keras 3).

- `encode(model, src, src_valid_len)`: the encoder alone, native outputs.
- `greedy_decode(model, src, src_valid_len, bos, steps)`: exactly `steps` greedy tokens, no early
  stop, carrying the key/value cache or recurrent state: the fastest loop we have.
- `recompute_greedy_decode(...)`: the same tokens, re-running `Decoder.call` over the whole prefix
  at every step (no cache), the baseline a cache must beat.
- `stepwise_greedy_decode(...)`: the readable loop, one eager `Decoder.call` per token with the
  state it returned; the fast paths must agree with it (tests/test_decoding_tensorflow.py).

Eager Keras costs milliseconds per layer call, so the fast paths run as graphs: the whole greedy
loop is one `tf.function(jit_compile=True)` (XLA), encoder included. XLA needs static shapes, so the
Transformer's self-attention cache is preallocated to `steps` and written at the step index, with
the keys past the current position masked out; recurrent decoders carry their state as it is.
Recompute grows its prefix, which XLA would recompile for at every length: it is one plain graph.

Each model's functions are traced (and compiled) on the first call at a (batch, source length,
steps) shape and reused after, so a caller warms up once per shape. Inputs are numpy arrays: token
ids, frames or images (conformance/sources.py; the valid lengths None for images); tokens come back
as numpy int64 (batch, steps).
"""
from __future__ import annotations

import functools
import math
import weakref

import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python.xla import dynamic_update_slice  # what keras.ops.slice_update runs

from .bahdanau import AttentionDecoder
from .recurrent import Seq2SeqDecoder
from .transformer import TransformerDecoder


def _inputs(model, src, src_valid_len, bos=0, steps=0):
    """(source, valid lengths or None for images) as tensors: token ids int32, frames and images in the
    model's dtype (conformance/sources.py). XLA compiles the Embedding's range checks away (and clamps
    an index that is out of range), so the ids and the positions a decode will use are checked here,
    once per call."""
    src = np.asarray(src)
    embedding = getattr(model.encoder, "embedding", None)  # a frame or image encoder has none
    if embedding is not None and src.size and (src.min() < 0 or src.max() >= embedding.input_dim):
        raise tf.errors.InvalidArgumentError(None, None, f"source token ids must lie in [0, {embedding.input_dim})")
    if not 0 <= bos < model.decoder.embedding.input_dim:
        raise tf.errors.InvalidArgumentError(None, None, f"bos {bos} is not a target token id")
    positions = getattr(getattr(model.decoder, "pos_encoding", None), "P", None)
    if positions is not None and steps > positions.shape[0]:
        raise ValueError(f"{steps} steps need more positions than the decoder's max_len {positions.shape[0]}")
    src = tf.constant(src, model.compute_dtype if np.issubdtype(src.dtype, np.floating) else tf.int32)
    return src, None if src_valid_len is None else tf.constant(np.asarray(src_valid_len), tf.int32)


def _lengths(valid):
    """d2l's `*args`: the valid lengths, or nothing for images."""
    return () if valid is None else (valid,)


def _start_state(encoder, decoder, src, valid):
    lengths = _lengths(valid)
    return decoder.init_state(encoder(src, *lengths, training=False), *lengths)


# --- one greedy step per decoder family: start(decoder, state, steps) -> carry,
#     step(decoder, token (batch,), t, carry) -> (logits (batch, vocab), carry) ----------------------

def _as_is(decoder, state, steps):
    """A recurrent state has the same shapes at every step: the loop carries it unchanged."""
    return state


def _recurrent_step(decoder, token, t, state):
    context, hidden = state
    x = tf.concat([decoder.embedding(token), context], -1)
    output, hidden = decoder.rnn.cell(x, hidden)  # one step of the stack the RNN layer runs
    return decoder.dense(output), (context, hidden)


def _attention_step(decoder, token, t, state):
    memory, keys, mask, hidden = state
    context = decoder.attention(hidden[-1][0], keys, memory, mask)
    output, hidden = decoder.rnn(tf.concat([context, decoder.embedding(token)], -1), hidden)
    return decoder.dense(output), (memory, keys, mask, hidden)


def _transformer_start(decoder, state, steps):
    """The d2l state, its growing cache swapped for zeros of the final length, filled step by step."""
    enc_mask, cross_kv, cache = state
    empty = cache[0][0]  # (batch, heads, 0, head size)
    shape = tf.concat([tf.shape(empty)[:2], [steps], tf.shape(empty)[3:]], 0)
    full = tf.zeros(shape, empty.dtype)
    return enc_mask, cross_kv, tuple((full, full) for _ in cache)


def _transformer_step(decoder, token, t, state):
    enc_mask, cross_kv, cache = state
    steps = tf.shape(cache[0][0])[2]
    X = decoder.embedding(token[:, None]) * math.sqrt(decoder.num_hiddens) + decoder.pos_encoding.P[t]
    seen = (tf.range(steps) <= t)[None, None, None, :]  # the cache slots written so far
    new_cache = []
    for blk, (keys, values), kv in zip(decoder.blks, cache, cross_kv):
        sa = blk.self_attention
        q, k, v = sa.project_qkv(X)
        # Written in place at slot t: XLA updates a while loop's buffer without copying it.
        keys, values = (dynamic_update_slice(c, new, [0, 0, t, 0]) for c, new in ((keys, k), (values, v)))
        Y = blk.addnorm1(X, sa.attend(q, keys, values, seen))
        Z = blk.addnorm2(Y, blk.cross_attention(Y, kv, enc_mask))
        X = blk.addnorm3(Z, blk.ffn(Z))
        new_cache.append((keys, values))
    return decoder.dense(X[:, 0]), (enc_mask, cross_kv, tuple(new_cache))


STEPPERS = {  # the most derived class first
    TransformerDecoder: (_transformer_start, _transformer_step),
    AttentionDecoder: (_as_is, _attention_step),
    Seq2SeqDecoder: (_as_is, _recurrent_step),
}


def _stepper(decoder):
    for cls, fns in STEPPERS.items():
        if isinstance(decoder, cls):
            return fns
    raise TypeError(f"no cached greedy step for {type(decoder).__name__}")


# --- the loops ---------------------------------------------------------------------------------

def _greedy(encoder, decoder, src, valid, bos, steps):
    start, step = _stepper(decoder)
    state = _start_state(encoder, decoder, src, valid)

    def body(t, token, carry, tokens):
        logits, carry = step(decoder, token, t, carry)
        token = tf.argmax(logits, -1, output_type=tf.int32)
        return t + 1, token, carry, tokens.write(t, token)

    first = tf.fill(tf.shape(src)[:1], bos)
    loop = (0, first, start(decoder, state, steps), tf.TensorArray(tf.int32, size=steps))
    _, _, _, tokens = tf.while_loop(lambda t, *_: t < steps, body, loop)
    return tf.transpose(tokens.stack())


def _recompute(encoder, decoder, src, valid, bos, steps):
    # A fresh state holds nothing decoded yet, and Decoder.call never mutates it: reusable.
    fresh = _start_state(encoder, decoder, src, valid)

    def body(t, prefix):
        logits, _ = decoder(prefix, fresh, training=False)
        return t + 1, tf.concat([prefix, tf.argmax(logits[:, -1:], -1, output_type=tf.int32)], 1)

    prefix = tf.fill([tf.shape(src)[0], 1], bos)
    _, prefix = tf.while_loop(lambda t, _: t < steps, body, (0, prefix),
                              shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None])))
    return prefix[:, 1:]


class _Compiled:
    """One model's graph functions; tf.function keeps one trace (and XLA program) per input shape.

    They hold the encoder and decoder, not the model, so the cache below does not keep a model alive.
    The loops are explicit tf.while_loops: autograph would only add tracing time.
    """

    def __init__(self, encoder, decoder):
        self.encode = tf.function(lambda src, valid: encoder(src, *_lengths(valid), training=False),
                                  jit_compile=True, autograph=False)
        self.greedy = tf.function(functools.partial(_greedy, encoder, decoder), jit_compile=True, autograph=False)
        self.recompute = tf.function(functools.partial(_recompute, encoder, decoder), autograph=False)


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled(model) -> _Compiled:
    if model not in _COMPILED:
        _COMPILED[model] = _Compiled(model.encoder, model.decoder)
    return _COMPILED[model]


def encode(model, src, src_valid_len):
    return _compiled(model).encode(*_inputs(model, src, src_valid_len))


def greedy_decode(model, src, src_valid_len, bos, steps):
    inputs = _inputs(model, src, src_valid_len, bos, steps)
    # steps is a Python int: part of the trace key, so each decode length gets its own static shapes.
    tokens = _compiled(model).greedy(*inputs, tf.constant(bos, tf.int32), int(steps))
    return tokens.numpy().astype(np.int64)


def recompute_greedy_decode(model, src, src_valid_len, bos, steps):
    inputs = _inputs(model, src, src_valid_len, bos, steps)
    tokens = _compiled(model).recompute(*inputs, tf.constant(bos, tf.int32), int(steps))
    return tokens.numpy().astype(np.int64)


def stepwise_greedy_decode(model, src, src_valid_len, bos, steps):
    src, valid = _inputs(model, src, src_valid_len, bos, steps)
    state = _start_state(model.encoder, model.decoder, src, valid)
    tokens = tf.fill([src.shape[0], 1], bos)
    out = []
    for _ in range(steps):
        logits, state = model.decoder(tokens, state, training=False)
        tokens = tf.argmax(logits[:, -1:], -1, output_type=tf.int32)
        out.append(tokens)
    return tf.concat(out, 1).numpy().astype(np.int64)
