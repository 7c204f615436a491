"""Canonical weights: one name, shape and meaning for every parameter of each reference family, so
the same weights load into every framework (docs/weights.md; impls/numpy/ is the executable meaning).

Every affine map is y = x @ weight.T + bias, weight shaped (out, in), as in PyTorch and in the
safetensors files of most toolkits. Canonical files hold float32 values (float32 storage), so a
float32 model holds exactly the weights a float64 one does and the two differ only in arithmetic.
"""
from __future__ import annotations

import numpy as np

from .spec import ModelSpec

GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # GRU rows: reset, update, new; LSTM rows: input, forget, cell, output
RECURRENT_ENCODER = {"rnn": "rnn", "gru": "gru", "lstm": "lstm", "bahdanau": "gru"}
ATTENTION_GRU_DECODER = ("bahdanau", "mixed", "captioning")  # the additive-attention GRU decoder
MEMORY_INITIALISED = ("mixed", "captioning")  # no recurrent encoder state: h0 = tanh(init_hidden(mean memory))
SUBSAMPLING_CONVS = 2  # speech: stride-2 convolutions over time, kernel 3
BUFFERS = ("running_mean", "running_var")  # BatchNorm statistics: canonical weights that do not train


def is_buffer(name: str) -> bool:
    """A canonical weight that evaluation reads and training does not move by gradients."""
    return name.rsplit(".", 1)[-1] in BUFFERS


def shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every canonical parameter of `spec.family`."""
    s, family = spec, spec.family
    if family in RECURRENT_ENCODER:
        cell = RECURRENT_ENCODER[family]
        encoder = {"encoder.embedding.weight": (s.src_vocab, s.embed_size),
                   **recurrent_stack("encoder.rnn", cell, s.embed_size, s.num_hiddens, s.num_layers)}
    elif family in ("transformer", "mixed"):
        encoder = transformer_stack("encoder", s, ("attention", "norm1", "ffn", "norm2"), s.src_vocab)
    elif family == "speech":  # frames subsampled by convolutions, then Transformer blocks (no embedding)
        encoder = {}
        for i in range(SUBSAMPLING_CONVS):
            encoder |= {f"encoder.subsampling.{i}.weight": (s.num_hiddens, s.num_features if i == 0 else s.num_hiddens, 3),
                        f"encoder.subsampling.{i}.bias": (s.num_hiddens,)}
        encoder |= transformer_stack("encoder", s, ("attention", "norm1", "ffn", "norm2"), None)
    elif family == "captioning":  # num_layers blocks of convolution (no bias), BatchNorm, ReLU
        encoder = {}
        for i in range(s.num_layers):
            block = f"encoder.cnn.{i}"
            encoder |= {f"{block}.conv.weight": (s.num_hiddens, s.channels if i == 0 else s.num_hiddens, 3, 3),
                        **{f"{block}.norm.{name}": (s.num_hiddens,) for name in ("weight", "bias", *BUFFERS)}}
    else:
        raise ValueError(f"no canonical weights for family {family!r}")

    if family in ("rnn", "gru", "lstm"):
        decoder = {"decoder.embedding.weight": (s.tgt_vocab, s.embed_size),
                   # the decoder's input at each step: [token embedding, context]
                   **recurrent_stack("decoder.rnn", family, s.embed_size + s.num_hiddens, s.num_hiddens, s.num_layers)}
    elif family in ATTENTION_GRU_DECODER:
        decoder = {"decoder.embedding.weight": (s.tgt_vocab, s.embed_size),
                   "decoder.attention.W_q.weight": (s.num_hiddens, s.num_hiddens),
                   "decoder.attention.W_k.weight": (s.num_hiddens, s.num_hiddens),
                   "decoder.attention.w_v.weight": (1, s.num_hiddens),
                   # the decoder's input at each step: [attention context, token embedding]
                   **recurrent_stack("decoder.rnn", "gru", s.num_hiddens + s.embed_size, s.num_hiddens, s.num_layers)}
        if family in MEMORY_INITIALISED:  # no final encoder state: h0 = tanh(init_hidden(mean memory))
            decoder |= affine("decoder.init_hidden", s.num_hiddens, s.num_layers * s.num_hiddens)
    else:
        decoder = transformer_stack("decoder", s, ("self_attention", "norm1", "cross_attention", "norm2", "ffn", "norm3"),
                                    s.tgt_vocab)
    return encoder | decoder | affine("decoder.dense", s.num_hiddens, s.tgt_vocab)


def affine(name: str, fan_in: int, fan_out: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (fan_out, fan_in), **({f"{name}.bias": (fan_out,)} if bias else {})}


def recurrent_stack(prefix, cell, input_size, num_hiddens, num_layers):
    rows = GATES[cell] * num_hiddens
    layers = {}
    for layer in range(num_layers):
        fan_in = input_size if layer == 0 else num_hiddens
        layers |= {f"{prefix}.{layer}.weight_ih": (rows, fan_in), f"{prefix}.{layer}.weight_hh": (rows, num_hiddens),
                   f"{prefix}.{layer}.bias_ih": (rows,), f"{prefix}.{layer}.bias_hh": (rows,)}
    return layers


def transformer_stack(side, s, sublayers, vocab):
    """Post-norm blocks (d2l 11.7): X = norm(X + sublayer(X)). Attention projections are separate.
    An embedding of `vocab` ids, unless `vocab` is None (the blocks read something else: frames)."""
    params = {} if vocab is None else {f"{side}.embedding.weight": (vocab, s.num_hiddens)}
    h = s.num_hiddens
    for i in range(s.num_layers):
        block = f"{side}.blocks.{i}"
        for sub in sublayers:
            if sub.endswith("attention"):
                for proj in ("W_q", "W_k", "W_v", "W_o"):
                    params |= affine(f"{block}.{sub}.{proj}", h, h)
            elif sub == "ffn":
                params |= affine(f"{block}.ffn.dense1", h, s.ffn_num_hiddens) | affine(f"{block}.ffn.dense2", s.ffn_num_hiddens, h)
            else:
                params |= {f"{block}.{sub}.weight": (h,), f"{block}.{sub}.bias": (h,)}
    return params


def random_weights(spec: ModelSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights drawn so that a wrong convention shows: pre-activations of unit scale (gates neither
    saturated nor linear, attention far from uniform), non-zero biases, layer-norm gains away from 1."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in sorted(shapes(spec).items()):
        if name.endswith("running_var"):
            values = rng.uniform(0.5, 1.5, shape)  # about the variance a unit-scale input gives
        elif ".norm" in name:
            centre = 1.0 if name.endswith("weight") else 0.0
            values = centre + rng.uniform(-0.5, 0.5, shape)
        elif name.endswith("embedding.weight"):
            values = rng.uniform(-np.sqrt(3), np.sqrt(3), shape)  # unit variance
        elif len(shape) >= 2:
            bound = np.sqrt(3 / np.prod(shape[1:]))  # unit-variance outputs for unit-variance inputs (fan-in: in x kernel)
            values = rng.uniform(-bound, bound, shape)
        else:
            values = rng.uniform(-0.5, 0.5, shape)
        weights[name] = values.astype(np.float32)
    return weights


def check(spec: ModelSpec, weights: dict[str, np.ndarray]) -> None:
    """ValueError naming every missing, unexpected or misshapen parameter."""
    expected = shapes(spec)
    problems = [f"missing {n}" for n in expected if n not in weights]
    problems += [f"unexpected {n}" for n in weights if n not in expected]
    problems += [f"{n} has shape {tuple(weights[n].shape)}, not {shape}" for n, shape in expected.items()
                 if n in weights and tuple(weights[n].shape) != shape]
    if problems:
        raise ValueError(f"canonical weights for {spec.family}: " + "; ".join(problems))


# safetensors is imported where files are read or written: drawing weights, and the factories that
# import this module (impls/torch, impls/numpy), need NumPy alone.
def save(path, weights: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(value) for name, value in weights.items()}, str(path))


def load(path, spec: ModelSpec | None = None, dtype=np.float64) -> dict[str, np.ndarray]:
    """The weights in `path` as `dtype` arrays; checked against `spec`'s family when given."""
    from safetensors.numpy import load_file

    weights = {name: value.astype(dtype) for name, value in load_file(str(path)).items()}
    if spec is not None:
        check(spec, weights)
    return weights
