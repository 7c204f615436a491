"""The PyTorch references exported to ONNX: encoder, init_state and decoder step, state as named
inputs and outputs (Optimum's convention: `past...` in, `present...` out), growing caches and
batch, source and target lengths as dynamic axes.

Exporter: torch.onnx's TorchScript-based one (`dynamo=False`). The dynamo exporter (torch.export)
cannot capture `pack_padded_sequence`, which the recurrent encoders use to stop at each valid
length (it fails on the data-dependent batch sizes); the TorchScript exporter maps it to the
`sequence_lens` of ONNX's RNN, GRU and LSTM operators.

Two changes to what is exported, both of the kind an exporter's user makes:
- token ids below 0 become `vocab_size` before each embedding: ONNX's Gather reads a negative id as
  counting from the end, ONNX Runtime raises only past the end, and the references raise on both;
- self-attention splits its fused projection with positive axes: the exporter writes the
  reference's movedim(-2, 0) as a Transpose with perm (-2, 0, 1, 3), which ONNX Runtime rejects.
The recurrent decoders with attention (bahdanau, mixed, captioning) loop over target steps in
Python, which a trace cannot keep: their decoder graph takes one token per call, and the adapter
feeds longer targets a token at a time.

In float64, speech's convolutions are exported as MatMuls of strided slices (`subsampling_as_matmuls`):
ONNX Runtime's CPU Conv has no float64 kernel. Captioning stays float32 (its CNN's Conv, its GRU).

Sources by kind (conformance/sources.py): the encoder graph takes `input_ids` (token ids),
`input_features` (frames, with `src_valid_len`) or `pixel_values` (images, no lengths: neither the
encoder nor init_state graph has a length input), Hugging Face's names. Speech's encoder returns its
subsampled lengths beside its outputs (`encoder_valid_lens`), which init_state turns into the
cross-attention mask; images' height and width are dynamic axes, as the CNN pools any size.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings

import torch
from torch import nn

from conformance.sources import kind_of

from .. import conv_lengths
from ..torch import attention as torch_attention
from ..torch import speech as torch_speech
from ..torch import transformer as torch_transformer

OPSET = 17
SOURCE_INPUT = {"tokens": "input_ids", "frames": "input_features", "images": "pixel_values"}
# The state of these families is that of another's: speech's decoder is the Transformer's, captioning's
# the attention GRU of mixed.
STATE_LIKE = {"speech": "transformer", "captioning": "mixed"}


class CheckedIds(nn.Module):
    """An embedding whose ids below 0 are sent past the table, so that Gather refuses them."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding

    def forward(self, ids):
        return self.embedding(torch.where(ids < 0, torch.full_like(ids, self.embedding.num_embeddings), ids))


def checked_ids(module: nn.Module) -> nn.Module:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Embedding):
            setattr(module, name, CheckedIds(child))
        else:
            checked_ids(child)
    return module


def self_attention_with_positive_axes(self, X, mask, past=None):
    """SelfAttention.forward with the same arithmetic: the exporter writes its movedim(-2, 0) as a
    Transpose with perm (-2, 0, 1, 3), which ONNX Runtime rejects."""
    q, k, v = self.W_qkv(X).unflatten(-1, (3, self.num_heads, -1)).permute(0, 2, 3, 1, 4).unbind(1)
    if past is not None:
        k, v = torch.cat((past[0], k), 2), torch.cat((past[1], v), 2)
    return torch_attention.MultiHeadAttention.forward(self, q, k, v, mask), (k, v)


def subsampling_as_matmuls(self, X, valid_lens):
    """ConvSubsampling.forward with each kernel-3, stride-2 convolution written as three strided slices,
    each times its tap's weight matrix: ONNX Runtime's CPU Conv has no float64 kernel, MatMul has. Same
    sums, in another order (float64 rounding)."""
    X = X.transpose(1, 2)
    for conv in self:
        within = torch.arange(X.shape[2], device=X.device) < valid_lens[:, None]
        padded = torch.nn.functional.pad(X.masked_fill(~within[:, None, :], 0), (1, 1))
        steps = (X.shape[2] - 1) // 2 + 1
        taps = [torch.matmul(conv.weight[:, :, k], padded[:, :, k: k + 2 * steps: 2]) for k in range(3)]
        X = torch.relu(taps[0] + taps[1] + taps[2] + conv.bias[:, None])
        valid_lens = conv_lengths(valid_lens)
    return X.transpose(1, 2), valid_lens


FLOAT64_PATCHES = ((torch_speech.ConvSubsampling, "forward", subsampling_as_matmuls),)


@contextlib.contextmanager
def exportable_attention(patches=()):
    """The reference's classes as exported, with `patches` ((class, method name, function), ...) on top."""
    patched = [(torch_transformer.SelfAttention, "forward", self_attention_with_positive_axes), *patches]
    originals = [(cls, name, cls.__dict__[name]) for cls, name, _ in patched]
    for cls, name, replacement in patched:
        setattr(cls, name, replacement)
    try:
        yield
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


# --- what each family's state is called -----------------------------------------------------------

def recurrent_names(cell: str) -> list[str]:
    return ["hidden", "cell"] if cell == "lstm" else ["hidden"]


class Graphs:
    """One family's three torch modules to export, with their input and output names."""

    def __init__(self, model: nn.Module, family: str, num_layers: int):
        self.source_family = family
        self.family = STATE_LIKE.get(family, family)  # what the state is
        self.model = model
        self.num_layers = num_layers

    def encoder_outputs(self) -> list[str]:
        if self.source_family == "speech":
            return ["encoder_outputs", "encoder_valid_lens"]  # the subsampled lengths
        if self.family in ("transformer", "mixed"):
            return ["encoder_outputs"]
        return ["encoder_outputs", *(f"encoder_{n}" for n in recurrent_names(self.family))]

    def state_names(self) -> list[str]:
        """Decoder inputs beside input_ids, in the order of the torch state."""
        if self.family in ("rnn", "gru", "lstm"):
            return ["context", *(f"past.{n}" for n in recurrent_names(self.family))]
        if self.family in ("bahdanau", "mixed"):
            return ["memory", "memory_keys", "memory_mask", "past.hidden"]
        cross = [f"past_key_values.{i}.encoder.{kv}" for i in range(self.num_layers) for kv in ("key", "value")]
        cache = [f"past_key_values.{i}.decoder.{kv}" for i in range(self.num_layers) for kv in ("key", "value")]
        return ["encoder_attention_mask", *cross, *cache]

    def present_names(self) -> list[str]:
        """Decoder outputs beside logits: the state inputs that change, `past` -> `present`."""
        if self.family == "transformer":
            return [n.replace("past_key_values", "present") for n in self.state_names() if ".decoder." in n]
        return [n.replace("past", "present") for n in self.state_names() if n.startswith("past")]

    # torch state <-> flat tensors
    def flatten(self, state) -> list[torch.Tensor]:
        if self.family in ("rnn", "gru", "lstm"):
            context, hidden = state
            return [context, *(hidden if isinstance(hidden, tuple) else (hidden,))]
        if self.family in ("bahdanau", "mixed"):
            return list(state)
        enc_mask, cross_kv, cache = state
        return [enc_mask, *(t for kv in cross_kv for t in kv), *(t for kv in cache for t in kv)]

    def unflatten(self, flat):
        flat = list(flat)
        if self.family in ("rnn", "gru", "lstm"):
            return flat[0], (tuple(flat[1:]) if self.family == "lstm" else flat[1])
        if self.family in ("bahdanau", "mixed"):
            return tuple(flat)
        n = self.num_layers
        pairs = [tuple(flat[1 + 2 * i: 3 + 2 * i]) for i in range(2 * n)]
        return flat[0], tuple(pairs[:n]), tuple(pairs[n:])

    def presents(self, state) -> list[torch.Tensor]:
        flat = dict(zip(self.state_names(), self.flatten(state)))
        return [flat[n.replace("present", "past_key_values" if self.family == "transformer" else "past")]
                for n in self.present_names()]

    def modules(self):
        graphs = self

        class Encoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = graphs.model.encoder

            def forward(self, source, *src_valid_len):  # images: no lengths
                out = self.encoder(source, *src_valid_len)
                if isinstance(out, tuple):  # recurrent: (outputs, final state); speech: (outputs, lengths)
                    outputs, hidden = out
                    return (outputs, *(hidden if isinstance(hidden, tuple) else (hidden,)))
                return out

        class InitState(nn.Module):
            def __init__(self):
                super().__init__()
                self.decoder = graphs.model.decoder

            def forward(self, *args):
                lengths = () if graphs.source_family == "captioning" else args[-1:]  # images: no lengths
                outputs = args[: len(args) - len(lengths)]
                if len(outputs) == 1:
                    enc = outputs[0]
                else:
                    enc = (outputs[0], tuple(outputs[1:]) if graphs.family == "lstm" else outputs[1])
                return tuple(graphs.flatten(self.decoder.init_state(enc, *lengths)))

        class Decoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.decoder = graphs.model.decoder

            def forward(self, input_ids, *state):
                logits, new_state = self.decoder(input_ids, graphs.unflatten(state))
                return (logits, *graphs.presents(new_state))

        return Encoder().eval(), InitState().eval(), Decoder().eval()


def example_source(family: str, vocab: int, example_shape, dtype, batch: int):
    """(source, its dynamic axes, valid lengths or () for images): what the encoder is exported at. Frames
    are 13 wide, odd, with lengths 13, 5 and 2 (shorter than the x4 subsampling)."""
    kind = kind_of(family)
    if kind == "tokens":
        return torch.randint(0, vocab, (batch, 5)), {0: "batch", 1: "src_len"}, (torch.tensor([5, 2, 3]),)
    if kind == "frames":
        return (torch.randn(batch, 13, *example_shape, dtype=dtype), {0: "batch", 1: "src_len"},
                (torch.tensor([13, 5, 2]),))
    return torch.randn(batch, *example_shape, dtype=dtype), {0: "batch", 2: "height", 3: "width"}, ()


def export(model: nn.Module, family: str, num_layers: int, vocab: tuple[int, int], patches=(),
           example_shape=()) -> dict[str, bytes]:
    """{"encoder", "init_state", "decoder"}: serialized ONNX models of `model` (a torch reference in
    eval mode, in its dtype), exported at small example shapes with dynamic axes; `patches` replace
    methods of the reference's classes while it is traced (tests/broken exports bugs so).
    `example_shape`: one source example's shape beyond batch and steps (conformance.sources.example_shape)."""
    model = checked_ids(copy.deepcopy(model)).eval()
    graphs = Graphs(model, family, num_layers)
    encoder, init_state, decoder = graphs.modules()
    batch, tgt_len = 3, 1 if graphs.family in ("bahdanau", "mixed") else 2
    dtype = next(model.parameters()).dtype
    source, source_axes, valid = example_source(family, vocab[0], example_shape, dtype, batch)
    source_name = SOURCE_INPUT[kind_of(family)]
    if dtype == torch.float64:
        patches = (*FLOAT64_PATCHES, *patches)
    length_name, length_axes = (["src_valid_len"], {"src_valid_len": {0: "batch"}}) if valid else ([], {})
    out = {}
    with torch.no_grad(), exportable_attention(patches), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on traced shapes and deprecations
        enc_outputs = encoder(source, *valid)
        enc_outputs = enc_outputs if isinstance(enc_outputs, tuple) else (enc_outputs,)
        enc_names = graphs.encoder_outputs()
        time_major = family in ("rnn", "gru", "lstm", "bahdanau")
        enc_axes = {"encoder_outputs": {1: "batch", 0: "src_len"} if time_major else {0: "batch", 1: "src_len"}}
        enc_axes |= {n: {1: "batch"} if graphs.family != "transformer" else {0: "batch"} for n in enc_names[1:]}
        out["encoder"] = _export(encoder, (source, *valid), [source_name, *length_name], enc_names,
                                 {source_name: source_axes, **length_axes, **enc_axes})
        state = init_state(*enc_outputs, *valid)
        state_names = graphs.state_names()
        state_axes = {name: _state_axes(graphs.family, name) for name in state_names}
        out["init_state"] = _export(init_state, (*enc_outputs, *valid), [*enc_names, *length_name], state_names,
                                    {**enc_axes, **length_axes, **state_axes})
        # The decoder is exported from a state that has decoded a step, so that a past of length 0
        # is no special case in the trace.
        tgt = torch.randint(0, vocab[1], (batch, tgt_len))
        _, state = model.decoder(tgt, graphs.unflatten(state))
        flat = graphs.flatten(state)
        present_axes = {n: _state_axes(graphs.family, n) for n in graphs.present_names()}
        steps = {} if tgt_len == 1 else {1: "tgt_len"}
        out["decoder"] = _export(decoder, (tgt, *flat), ["input_ids", *state_names], ["logits", *graphs.present_names()],
                                 {"input_ids": {0: "batch", **steps}, **state_axes,
                                  "logits": {0: "batch", **steps}, **present_axes})
    return out


def _state_axes(family: str, name: str) -> dict[int, str]:
    if name.endswith(("hidden", "cell")):
        return {1: "batch"}  # (layers, batch, hidden)
    if name == "context":
        return {0: "batch"}
    if name in ("memory", "memory_keys", "memory_mask"):
        return {0: "batch", 1: "src_len"}
    if name == "encoder_attention_mask":
        return {0: "batch", 3: "src_len"}
    if ".encoder." in name:
        return {0: "batch", 2: "src_len"}
    return {0: "batch", 2: "past_len"}  # the self-attention cache grows by a step per token


@contextlib.contextmanager
def quiet_stderr():
    """The exporter's C++ notes (missing shape inference of PackPadded, ...) go to file descriptor 2."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _export(module, args, input_names, output_names, dynamic_axes) -> bytes:
    f = io.BytesIO()
    with quiet_stderr():
        torch.onnx.export(module, args, f, dynamo=False, opset_version=OPSET, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True)
    return f.getvalue()
