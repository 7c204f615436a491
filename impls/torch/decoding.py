"""Greedy decoding entry points for the benchmarks, one set per backend package.

- `encode(model, src, src_valid_len)`: the encoder alone, native outputs.
- `greedy_decode(model, src, src_valid_len, bos, steps)`: exactly `steps` greedy tokens, no early
  stop, carrying the key/value cache or recurrent state: the fastest loop we have (the float32
  Transformer on the CPU: one graph compiled per shape, compiled_transformer.py; otherwise eager).
- `recompute_greedy_decode(...)`: the same tokens, re-running the decoder over the whole prefix
  at every step (no cache), the baseline a cache must beat.
- `stepwise_greedy_decode(...)`: the readable loop, one `Decoder.forward` call per token; the fast
  path must agree with it (tests/test_decoding.py).

Inputs are numpy arrays (or tensors): token ids, frames or images (conformance/sources.py; the valid
lengths None for images); tokens come back as a numpy int64 array (batch, steps), so a
caller's clock also covers any device work still in flight.

Below SMALL_BATCH rows both decode loops run on one intra-op thread and without oneDNN (both
restored afterwards): each op of a step is then a few microseconds of work, and forking a thread
team for it costs more than it saves. Measured at batch 1 (workload model, 2 threads available,
interleaved calls): one thread ~2,600-3,200 tokens/s, two threads ~2,300-2,700 when the cores are
otherwise idle, and 10-20 tokens/s when other jobs share the cores and every fork waits for a
descheduled worker. oneDNN's LSTM sets up its primitive on every call: 128 steps at batch 1 took
81 ms with it and 26 ms with PyTorch's own kernels (at batch 32, 194 ms against 226 ms: kept).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from . import compiled_transformer, fast_transformer
from .transformer import TransformerDecoder, TransformerEncoder


SMALL_BATCH = 8


@contextlib.contextmanager
def _settings_for(batch, device):
    if batch >= SMALL_BATCH or device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # None leaves a flag alone (touching allow_tf32 warns on CPU-only builds).
        with torch.backends.mkldnn.flags(enabled=False, deterministic=None, allow_tf32=None, fp32_precision=None):
            yield
    finally:
        torch.set_num_threads(threads)


def _device(model):
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _tokens(a, device):
    return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a, dtype=torch.long, device=device)


def _source(model, src):
    """Token ids as int64; frames and images (conformance/sources.py) in the model's dtype."""
    src = src if isinstance(src, torch.Tensor) else torch.as_tensor(np.asarray(src))
    if not src.is_floating_point():
        return src.to(_device(model), torch.long)
    first = next(model.parameters(), None)
    return src.to(_device(model), first.dtype if first is not None else src.dtype)


def _start(model, src, src_valid_len):
    """(source, d2l's *args: the valid lengths, or nothing for images, encoder outputs)."""
    src = _source(model, src)
    lengths = () if src_valid_len is None else (_tokens(src_valid_len, src.device),)
    return src, lengths, model.encoder(src, *lengths)


@torch.inference_mode()
def encode(model, src, src_valid_len):
    return _start(model, src, src_valid_len)[2]


@torch.inference_mode()
def stepwise_greedy_decode(model, src, src_valid_len, bos, steps):
    """The d2l loop, on the model's threads as they are: the readable baseline."""
    src, lengths, enc = _start(model, src, src_valid_len)
    state = model.decoder.init_state(enc, *lengths)
    tokens = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
    out = []
    for _ in range(steps):
        logits, state = model.decoder(tokens, state)
        tokens = logits[:, -1].argmax(-1, keepdim=True)
        out.append(tokens)
    return torch.cat(out, 1).cpu().numpy()


def compiles(model) -> bool:
    """Whether greedy_decode runs `model` as one compiled graph (compiled_transformer): our Transformer
    in float32 on the CPU, in eval mode. Other dtypes and devices take the eager lean loop."""
    return (isinstance(model.encoder, TransformerEncoder) and isinstance(model.decoder, TransformerDecoder)
            and not model.training and _device(model).type == "cpu"
            and model.decoder.embedding.weight.dtype == torch.float32)


@torch.inference_mode()
def greedy_decode(model, src, src_valid_len, bos, steps):
    decoder = model.decoder
    with _settings_for(len(src), _device(model)):
        # The lean loops ignore dropout, so a model in training mode takes the readable path.
        if isinstance(decoder, TransformerDecoder) and not decoder.training:  # speech's decoder too
            if compiles(model):  # the token Transformer only
                device = _device(model)
                src_t, valid = _tokens(src, device), _tokens(src_valid_len, device)
                fallback = lambda: _lean_transformer(model, src_t, valid, bos, steps)  # noqa: E731
                return compiled_transformer.graph_for(model)(src_t, valid, bos, steps, fallback).numpy()
            return _lean_transformer(model, src, src_valid_len, bos, steps).cpu().numpy()
        # Recurrent decoders (captioning's attention GRU included) already do one fused cell call per
        # step: the d2l loop is the fast one.
        return stepwise_greedy_decode(model, src, src_valid_len, bos, steps)


def _lean_transformer(model, src, src_valid_len, bos, steps):
    src, lengths, enc = _start(model, src, src_valid_len)
    return fast_transformer.greedy(model.decoder, *model.decoder.memory(enc, *lengths), bos, steps)


@torch.inference_mode()
def recompute_greedy_decode(model, src, src_valid_len, bos, steps):
    with _settings_for(len(src), _device(model)):
        return _recompute(model, src, src_valid_len, bos, steps)


def _recompute(model, src, src_valid_len, bos, steps):
    src, lengths, enc = _start(model, src, src_valid_len)
    # A fresh state holds nothing decoded yet, and Decoder.forward never mutates it: reusable.
    fresh = model.decoder.init_state(enc, *lengths)
    prefix = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
    for _ in range(steps):
        logits, _ = model.decoder(prefix, fresh)
        prefix = torch.cat((prefix, logits[:, -1].argmax(-1, keepdim=True)), 1)
    return prefix[:, 1:].cpu().numpy()
