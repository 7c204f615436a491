"""MXNet peers of the MXNet reference Transformer, at the workload's size (the convention of peers_torch.py).

- gluonnlp 0.10 Transformer (`NMTModel` with `TransformerOneStepDecoder`), hybridized, greedy:
  one `decode_step` per token. Its one-step decoder keeps no key/value cache: it carries the
  embedded prefix and runs the decoder over all of it at every step (gluonnlp's own design).

gluonnlp is written for MXNet's legacy NDArray interface, while our reference models switch the
process to the numpy interface (`npx.set_np()` in impls/mxnet/d2l.py); the peer is built and run
inside a scope that turns numpy semantics off, so both can share one process.

Side by side with impls.mxnet: `python -m benchmarks.ratios --backends mxnet --tables peers`.
"""
from __future__ import annotations

import contextlib
import functools

import numpy as np

from . import workload as W
from .backends import Unavailable


def _mx():
    from conformance.compat import import_mxnet

    return import_mxnet()


@contextlib.contextmanager
def _legacy_ndarray():
    """Legacy NDArray semantics for gluonnlp, whatever the process set globally."""
    mx = _mx()
    with mx.util.np_array(False), mx.util.np_shape(False):  # this order: array semantics need shape semantics
        yield


@functools.lru_cache(maxsize=None)
def _gluonnlp_transformer(max_tgt_length):
    mx = _mx()
    try:
        import gluonnlp as nlp
    except ImportError as exc:
        raise Unavailable(f"gluonnlp is not installed: {exc}") from exc
    from gluonnlp.model.transformer import get_transformer_encoder_decoder

    with _legacy_ndarray():
        encoder, decoder, one_step = get_transformer_encoder_decoder(
            num_layers=W.LAYERS, num_heads=W.HEADS, units=W.D_MODEL, hidden_size=W.FFN, dropout=0.0,
            max_src_length=W.SRC_LEN, max_tgt_length=max_tgt_length,
        )
        vocab = range(W.VOCAB)  # NMTModel only asks the vocabularies for their length
        model = nlp.model.translation.NMTModel(
            src_vocab=vocab, tgt_vocab=vocab, encoder=encoder, decoder=decoder, one_step_ahead_decoder=one_step,
            embed_size=W.D_MODEL, prefix="transformer_",
        )
        mx.random.seed(W.SEED)
        model.initialize(mx.init.Xavier(magnitude=3.0))
        model.hybridize()
    return model


def gluonnlp_transformer(batch, steps):
    """gluonnlp 0.10's Transformer, hybridized, greedy through its one-step decoder (no cache)."""
    mx = _mx()
    W.pin_framework_threads()
    # Positions 0..steps-1 are decoded; sized per decode length like the reference's max_len.
    model = _gluonnlp_transformer(max(W.DECODE_LENGTHS) + 1)
    src_np, valid_np = W.source(batch)
    with _legacy_ndarray():
        src, valid = mx.nd.array(src_np), mx.nd.array(valid_np)

    def decode():
        with _legacy_ndarray():
            memory, _ = model.encode(src, valid_length=valid)
            states = model.one_step_ahead_decoder.init_state_from_encoder(memory, valid)
            tokens, out = mx.nd.full((batch,), W.BOS), []
            for _ in range(steps):
                logits, states, _ = model.decode_step(tokens, states)
                tokens = logits.argmax(axis=-1)  # stays on the device: no host round-trip per step
                out.append(tokens)
            return mx.nd.stack(*out, axis=1).asnumpy().astype(np.int64)

    decode()  # warm-up: builds the cached graphs (hybridize) outside the timed call
    return decode


PEERS = {  # name: (label, builder); beside the MXNet reference Transformer
    "gluonnlp-transformer": ("gluonnlp 0.10 Transformer, hybridized one-step decoder (no cache)", gluonnlp_transformer),
}
