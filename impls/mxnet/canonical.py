"""Canonical weights (docs/weights.md) in and out of the MXNet references.

Parameters are found by their path in the block tree, the attribute names from the model down
(`decoder.step.rnn.cells.0.i2h.weight`), never by Gluon's global names (`dense17_weight`), which
count the blocks the process created before. The layouts already agree with the canonical ones:
- Dense weights are (out, in), as canonical.
- The hand-written cells (recurrent.py) hold two affine maps, `i2h` (W_ih, b_ih) and `h2h` (W_hh,
  b_hh), each with its bias: GRU rows reset/update/new with the reset gate applied after the
  recurrent matmul, LSTM rows input/forget/cell/output. Both biases load as they are; no sums.
- Self-attention's W_qkv stacks the rows of W_q, W_k, W_v; cross-attention's W_kv those of W_k,
  W_v. Heads are contiguous blocks of H / heads along the features (split_heads), in both the d2l
  path and the fast step graph of decoding.py.
- LayerNorm's gamma/beta are canonical `norm<k>.weight`/`.bias`. Gluon's default ε is 1e-5, but
  MXNet's layer_norm operator holds it as a C float: it normalizes with float32(1e-5) =
  9.99999975e-06, which moves float64 Transformer logits by ~1e-13 from an exact ε = 1e-5
  (tests/test_canonical_mxnet.py measures it against PyTorch).
- The Bahdanau step block (`decoder.step`) holds the decoder's attention and GRU stack.
- Convolution weights are (out, in, kernel...) as canonical; speech's sit in `subsampling.convs`.
  BatchNorm's gamma/beta are canonical `norm.weight`/`.bias`, its running statistics load into
  parameters that do not train (grad_req 'null'). Unlike layer_norm, MXNet's BatchNorm operator holds
  ε as a double: captioning's float64 logits agree with PyTorch's to ~5e-16.
"""
import re

import numpy as np

from conformance.bridges import parameters_once
from conformance.compat import import_mxnet

from .. import unfused

mx = import_mxnet()

RENAMES = (  # (pattern, replacement) on a block-tree path, in order
    (r"^decoder\.step\.", "decoder."),  # AttentionStep holds the Bahdanau decoder's attention and GRU
    (r"\.rnn\.cells\.(\d+)\.i2h\.(weight|bias)$", r".rnn.\1.\2_ih"),
    (r"\.rnn\.cells\.(\d+)\.h2h\.(weight|bias)$", r".rnn.\1.\2_hh"),
    (r"\.blks\.", ".blocks."),
    (r"\.addnorm(\d)\.ln\.gamma$", r".norm\1.weight"),
    (r"\.addnorm(\d)\.ln\.beta$", r".norm\1.bias"),
    (r"\.ffn\.0\.", ".ffn.dense1."),
    (r"\.ffn\.1\.", ".ffn.dense2."),
    (r"\.subsampling\.convs\.", ".subsampling."),  # speech's convolutions sit in a container
    (r"\.norm\.gamma$", ".norm.weight"),  # captioning's BatchNorm (running_mean, running_var as they are)
    (r"\.norm\.beta$", ".norm.bias"),
)


def canonical_name(path: str) -> str:
    """The canonical name of a parameter at `path` in the block tree."""
    for pattern, replacement in RENAMES:
        path = re.sub(pattern, replacement, path)
    return path


def parameters(model) -> dict:
    """{block-tree path: Parameter}, each parameter once (the first path that reaches it)."""
    # _collect_params_with_prefix walks _children by attribute name.
    return parameters_once({"model": model._collect_params_with_prefix().items()})["model"]


def load_canonical(model, weights: dict[str, np.ndarray]) -> None:
    """Copy canonical `weights` into `model`'s parameters, in place and in each parameter's dtype, so
    the cached graphs (hybridized blocks, decoding.py's step graphs, which share the parameters) see
    them. Every parameter is covered and none is left over; nothing is written unless both hold."""
    weights, values = dict(weights), {}
    missing = []
    for path, param in parameters(model).items():
        names = unfused(canonical_name(path))
        if any(name not in weights for name in names):
            missing.append(f"{path} (as {', '.join(names)})")
            continue
        rows = np.concatenate([np.asarray(weights.pop(name)) for name in names])
        if rows.shape != tuple(param.shape):
            raise ValueError(f"{path}: canonical {', '.join(names)} stack to {rows.shape}, the parameter is {param.shape}")
        values[path] = rows
    problems = ([f"no canonical weights for {', '.join(missing)}"] if missing else []) + (
        [f"canonical weights the model has no place for: {sorted(weights)}"] if weights else [])
    if problems:
        raise ValueError("; ".join(problems))
    for path, param in parameters(model).items():
        write_in_place(param, values[path])


def write_in_place(param, value: np.ndarray) -> None:
    """Write `value`, cast to the parameter's dtype, into the parameter's existing arrays (every
    context's), so a cached graph that holds them reads the new values.

    Through an operator's output, not Parameter.set_data: on CPU, oneDNN reorders a float32 Conv1D
    weight into its own layout in place at the first inference call, and set_data's copy (CopyFromTo)
    then fails with `Check failed: to.IsDefaultData()`, asynchronously, at the next read. An operator
    writing its output resets the array to the default layout first."""
    for array in param.list_data():
        source = mx.nd.array(value, dtype=param.dtype, ctx=array.ctx)
        mx.nd.identity(source, out=array.as_nd_ndarray())


def export_canonical(model) -> dict[str, np.ndarray]:
    """The model's weights under their canonical names, in the model's dtype."""
    weights = {}
    for path, param in parameters(model).items():
        names = unfused(canonical_name(path))
        weights |= zip(names, np.split(param.data().asnumpy(), len(names)))
    return weights
