"""Greedy decoding of the Transformer as one compiled graph: encoder, cross-attention keys/values and
every decoding step, compiled by torch.compile (Inductor, C++ wrapper) once per shape.

At batch 1 a decoding step reads the decoder's ~8.4 MB of weights once, at memory speed; everything
else a step does is a few dozen tiny ops, whose dispatch from Python cost as much again (the eager
loop in fast_transformer.py). Here the loop itself is compiled (torch's `while_loop`), so a step is
13 GEMMs and a dozen fused C++ kernels with nothing between them, and a decode is one call:

- the self-attention cache is preallocated for every step, written in place, and attended to
  through a mask (one static shape for every step, so one graph);
- weights are rearranged once (cached per parameter version, as fast_transformer does): the
  projections transposed and contiguous (MKL's fastest layout for 1 to 32 rows on our machines),
  1/sqrt(d_head) folded into the query projections and sqrt(d) into the embeddings, both exact for
  a power-of-two head size;
- at batch 1 the cross-attention's query and output projections are folded into the source's keys
  and values once per decode (folds_cross_attention): fewer weights read per token, the same
  products summed in another order (2% of a decode at batch 1, measured);
- shapes are static: a new batch size, source length, decode length or dtype compiles again
  (tens of seconds; Inductor caches the result on disk for later processes).

`GreedyGraph.status` says, per shape, whether the compiled graph or the eager fallback ran, and why.
tests/test_decoding_torch.py checks its tokens against `Decoder.forward`.
"""
from __future__ import annotations

import functools
import math
import operator
import os
import time
import warnings
import weakref
from typing import NamedTuple

import torch
from torch.nn import functional as F
from torch.utils import _pytree as pytree
from torch._higher_order_ops.while_loop import while_loop

# A new shape is a recompile of the same function: more than Dynamo's default of 8 (asv alone times
# 2 batch sizes x 4 decode lengths).
RECOMPILE_LIMIT = 64
OPTIONS = {"cpp_wrapper": True}  # the wrapper that calls the kernels in C++, not Python


class Linear(NamedTuple):
    weight_t: torch.Tensor  # (in, out), contiguous
    bias: torch.Tensor

    @classmethod
    def of(cls, weight, bias, scale=1.0):
        return cls((weight.detach() * scale).t().contiguous(), bias.detach() * scale)

    def __call__(self, x):
        # Not addmm, which copies the bias into its output before the GEMM: the bias joins the fused kernel
        # that follows instead (6% of a decode at batch 1 and 32). The [None] ... [0] keeps Inductor from
        # matching `mm + bias` back into addmm.
        return ((x @ self.weight_t)[None] + self.bias)[0]


class Norm(NamedTuple):
    weight: torch.Tensor
    bias: torch.Tensor
    eps: float

    @classmethod
    def of(cls, add_norm):
        return cls(add_norm.ln.weight.detach(), add_norm.ln.bias.detach(), add_norm.ln.eps)

    def __call__(self, x):
        return torch.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


class EncoderBlock(NamedTuple):
    qkv: Linear  # queries pre-scaled by 1/sqrt(d_head)
    out: Linear
    norm1: Norm
    ffn1: Linear
    ffn2: Linear
    norm2: Norm


class DecoderBlock(NamedTuple):
    qkv: Linear
    self_out: Linear
    norm1: Norm
    cross_q: Linear
    cross_kv: Linear
    cross_out: Linear
    norm2: Norm
    ffn1: Linear
    ffn2: Linear
    norm3: Norm


class Weights(NamedTuple):
    heads: int
    src_embedding: torch.Tensor  # pre-scaled by sqrt(d)
    tgt_embedding: torch.Tensor
    src_positions: torch.Tensor  # (max_len, d) in the model's dtype
    tgt_positions: torch.Tensor
    encoder: tuple[EncoderBlock, ...]
    decoder: tuple[DecoderBlock, ...]
    dense: Linear


def _query_scaled(attention, heads):
    """The fused projection with its query rows (the first third) scaled by 1/sqrt(d_head)."""
    weight, bias = attention.W_qkv.weight, attention.W_qkv.bias
    d = weight.shape[1]
    scale = torch.ones(3 * d, dtype=weight.dtype, device=weight.device)
    scale[:d] = 1 / math.sqrt(d // heads)
    return Linear.of(weight * scale[:, None], bias * scale)


def rearranged(model) -> Weights:
    encoder, decoder = model.encoder, model.decoder
    heads, d = decoder.num_heads, decoder.num_hiddens
    q_scale = 1 / math.sqrt(d // heads)
    enc_blocks = tuple(EncoderBlock(
        _query_scaled(b.attention, heads), Linear.of(b.attention.W_o.weight, b.attention.W_o.bias), Norm.of(b.addnorm1),
        Linear.of(b.ffn[0].weight, b.ffn[0].bias), Linear.of(b.ffn[2].weight, b.ffn[2].bias), Norm.of(b.addnorm2),
    ) for b in encoder.blks)
    dec_blocks = tuple(DecoderBlock(
        _query_scaled(b.self_attention, heads),
        Linear.of(b.self_attention.W_o.weight, b.self_attention.W_o.bias), Norm.of(b.addnorm1),
        Linear.of(b.cross_attention.W_q.weight, b.cross_attention.W_q.bias, q_scale),
        Linear.of(b.cross_attention.W_kv.weight, b.cross_attention.W_kv.bias),
        Linear.of(b.cross_attention.W_o.weight, b.cross_attention.W_o.bias), Norm.of(b.addnorm2),
        Linear.of(b.ffn[0].weight, b.ffn[0].bias), Linear.of(b.ffn[2].weight, b.ffn[2].bias), Norm.of(b.addnorm3),
    ) for b in decoder.blks)
    dtype = decoder.embedding.weight.dtype
    return Weights(
        heads,
        encoder.embedding.weight.detach() * math.sqrt(encoder.num_hiddens),
        decoder.embedding.weight.detach() * math.sqrt(d),
        encoder.pos_encoding.P.to(dtype), decoder.pos_encoding.P.to(dtype),
        enc_blocks, dec_blocks, Linear.of(decoder.dense.weight, decoder.dense.bias),
    )


def _attend(q, k, v, bias):
    """Scaled dot-product attention, the scale already in q; bias 0 or -inf per key."""
    return torch.softmax(q @ k.transpose(-1, -2) + bias, -1) @ v


def _heads(x, batch, parts, heads):
    """(batch * steps, parts * d) -> (parts, batch, heads, steps, d_head)."""
    return x.view(batch, -1, parts, heads, x.shape[-1] // (parts * heads)).permute(2, 0, 3, 1, 4)


def _encode(w: Weights, src, key_bias):
    batch, steps = src.shape
    x = (w.src_embedding[src] + w.src_positions[:steps]).flatten(0, 1)
    for b in w.encoder:
        q, k, v = _heads(b.qkv(x), batch, 3, w.heads)
        # The fused attention kernel here (1-2% faster than Inductor's own); it cannot run inside while_loop.
        y = F.scaled_dot_product_attention(q, k, v, key_bias, scale=1.0).transpose(1, 2).reshape(x.shape)
        x = b.norm1(x + b.out(y))
        x = b.norm2(x + b.ffn2(torch.relu(b.ffn1(x))))
    return x


def _key_bias(valid_lens, src_steps: int, dtype):
    """(batch, 1, 1, src_steps): 0 for each example's source positions within its valid length, -inf after."""
    positions = torch.arange(src_steps, device=valid_lens.device)
    return torch.zeros(len(valid_lens), 1, 1, src_steps, dtype=dtype, device=valid_lens.device).masked_fill(
        (positions >= valid_lens[:, None])[:, None, None, :], -math.inf)


def _cross_keys_values(b: DecoderBlock, memory, batch: int, heads: int):
    """A decoder block's cross-attention keys and values of the source, (batch, heads, src_steps, d_head) each."""
    return tuple(kv.contiguous() for kv in _heads(b.cross_kv(memory), batch, 2, heads))


def folds_cross_attention(batch, heads, src_steps, d) -> bool:
    """Whether the decoder's cross-attention is folded into the source (_folded_cross_attention): where
    each example's folded matrices are no bigger than the two d x d projections they replace (batch 1
    at 4 heads, 32 source tokens and d 256: a step reads 0.5 MB of its 8.4 less)."""
    return batch * heads * src_steps <= d


def _folded_cross_attention(b: DecoderBlock, cross_k, cross_v, key_bias):
    """attend(x) = CrossAttention(x) on one source, with the query and output projections folded into
    its keys and values once per decode. Per head h, with Q_h = x Wq_h^T + bq_h and an output
    sum_h P_h V_h Wo_h^T + bo: scores x (Wq_h^T K_h^T) + bq_h K_h^T, output P (V_h Wo_h^T) + bo."""
    batch, heads, src_steps, head_dim = cross_k.shape
    d = heads * head_dim
    wq, bq = b.cross_q.weight_t.view(d, heads, head_dim), b.cross_q.bias.view(heads, head_dim)
    scores_of = torch.einsum("ihe,bhle->bihl", wq, cross_k).reshape(batch, d, heads * src_steps)
    scores_bias = (torch.einsum("he,bhle->bhl", bq, cross_k)[:, :, None, :] + key_bias).reshape(batch, 1, heads * src_steps)
    values = torch.einsum("bhle,hej->bhlj", cross_v, b.cross_out.weight_t.view(heads, head_dim, d)).reshape(batch, -1, d)

    def attend(x):
        weights = torch.softmax((x[:, None] @ scores_of + scores_bias).view(batch, heads, src_steps), -1)
        return (weights.view(batch, 1, -1) @ values)[:, 0] + b.cross_out.bias

    return attend


def _cross_attention(b: DecoderBlock, cross_k, cross_v, key_bias):
    """attend(x) = CrossAttention(x) on one source, as the model computes it."""
    batch, heads = cross_k.shape[:2]

    def attend(x):
        q = b.cross_q(x).view(batch, heads, 1, -1)
        return b.cross_out(_attend(q, cross_k, cross_v, key_bias).reshape(x.shape))

    return attend


def greedy_graph(w: Weights, src, valid_lens, bos, steps: int):
    """(batch, steps) greedy tokens: the whole decode, for torch.compile (while_loop runs compiled only)."""
    batch, src_steps = src.shape
    key_bias = _key_bias(valid_lens, src_steps, w.tgt_positions.dtype)
    memory = _encode(w, src, key_bias)
    d = memory.shape[-1]
    folded = folds_cross_attention(batch, w.heads, src_steps, d)
    attention = _folded_cross_attention if folded else _cross_attention
    cross = [attention(b, *_cross_keys_values(b, memory, batch, w.heads), key_bias) for b in w.decoder]
    caches = [memory.new_zeros(2, batch, w.heads, steps, d // w.heads) for _ in w.decoder]  # keys, values
    position = torch.arange(steps, device=src.device)

    def more(t, tokens, out):
        return t[0] < steps

    def step(t, tokens, out):
        x = w.tgt_embedding[tokens] + w.tgt_positions.index_select(0, t)
        self_bias = torch.zeros_like(position, dtype=x.dtype).masked_fill(position > t, -math.inf)
        for b, cache, cross_attention in zip(w.decoder, caches, cross):
            q, k, v = _heads(b.qkv(x), batch, 3, w.heads)
            cache.index_copy_(3, t, torch.stack((k, v)))
            x = b.norm1(x + b.self_out(_attend(q, cache[0], cache[1], self_bias).reshape(x.shape)))
            x = b.norm2(x + cross_attention(x))
            x = b.norm3(x + b.ffn2(torch.relu(b.ffn1(x))))
        tokens = w.dense(x).argmax(-1)
        return t + 1, tokens, out.index_copy(1, t, tokens[:, None])

    start = torch.zeros(1, dtype=torch.long, device=src.device)
    tokens = bos.expand(batch).clone()
    return while_loop(more, step, (start, tokens, src.new_zeros(batch, steps)))[2]


@functools.cache
def _compiled():
    """greedy_graph under torch.compile, made on first use: importing this module costs no compiler import."""
    return torch.compile(greedy_graph, fullgraph=True, dynamic=False, options=OPTIONS)


class GreedyGraph:
    """The compiled decode of one model's weights; the caller's eager loop where compiling fails."""

    # (batch, source length, steps, dtype, weight shapes) -> "compiled in N s" or "eager: <why>", per shape decoded
    status: dict = {}

    def __init__(self, model):
        self.weights = rearranged(model)
        self.size = (self.weights.heads, *(tuple(t.shape) for t in pytree.tree_leaves(self.weights) if torch.is_tensor(t)))

    def __call__(self, src, valid_lens, bos: int, steps: int, fallback):
        """(batch, steps) tokens; `fallback()` decodes them eagerly, run (its reason recorded in `status`)
        when torch.compile is disabled or cannot compile this shape."""
        w = self.weights
        key = (*src.shape, steps, str(w.tgt_positions.dtype).removeprefix("torch."), self.size)
        disabled = _disabled_reason()
        if disabled:
            GreedyGraph.status[key] = f"eager: {disabled}"
        if GreedyGraph.status.get(key, "").startswith("eager"):
            return fallback()
        if steps > w.tgt_positions.shape[0]:
            raise ValueError(f"{steps} steps exceed the positional table (max_len {w.tgt_positions.shape[0]})")
        bos = torch.tensor(bos, device=src.device)
        if key in GreedyGraph.status:
            with torch.inference_mode():  # compiled under it (while_loop has no autograd)
                return _compiled()(w, src, valid_lens, bos, steps)
        start = time.perf_counter()
        try:
            with torch.inference_mode(), torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):  # a new shape
                tokens = _compiled()(w, src, valid_lens, bos, steps)
        except torch._dynamo.exc.TorchDynamoException as exc:  # not an error of the decode: compiling failed
            reason = f"torch.compile failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            warnings.warn(f"impls.torch decodes the Transformer eagerly at {key}: {reason}", RuntimeWarning, stacklevel=3)
            GreedyGraph.status[key] = f"eager: {reason}"
            return fallback()
        GreedyGraph.status.setdefault(key, f"compiled in {time.perf_counter() - start:.1f} s")
        return tokens


def _disabled_reason() -> str | None:
    if os.environ.get("TORCH_COMPILE_DISABLE", "0") not in ("", "0") or torch._dynamo.config.disable:
        return "torch.compile is disabled (TORCH_COMPILE_DISABLE)"
    return None


# model -> (its modules' parameter dicts, key, GreedyGraph): rearranging costs ~1 ms. The key holds
# every parameter's identity, storage and version, so a weight updated in place (an optimizer step,
# load_state_dict) or replaced is seen; the dicts are listed once, as walking the module tree per
# call (model.parameters()) cost 150 us, 1% of a batch-1 decode.
_GRAPHS = weakref.WeakKeyDictionary()
_version = operator.attrgetter("_version")


def _parameters_key(parameter_dicts):
    params = [p for d in parameter_dicts for p in d.values() if p is not None]
    return tuple(map(id, params)), tuple(map(torch.Tensor.data_ptr, params)), tuple(map(_version, params))


def graph_for(model) -> GreedyGraph:
    cached = _GRAPHS.get(model)
    if cached is not None and cached[1] == _parameters_key(cached[0]):
        return cached[2]
    parameter_dicts = [m._parameters for m in model.modules()]
    graph = GreedyGraph(model)
    _GRAPHS[model] = (parameter_dicts, _parameters_key(parameter_dicts), graph)
    return graph
