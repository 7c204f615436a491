"""The specification as an implementation: a `conformance.Seq2SeqAdapter` over canonical weights.

The adapter holds a dict {canonical name: NumPy array} in its dtype and runs an encoder and a decoder
of this package on it. They take the weights as an argument, so `gradients` runs the same code on
torch tensors and lets autograd differentiate it: the gradient of the specification itself, in the
model's dtype. Without PyTorch there is no autodiff here, and `gradients` declines (Unsupported):
the gradient contracts are then skipped with that reason, never checked against finite differences
computed by the model itself.
"""
from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace

from conformance.canonical import is_buffer
from conformance.spec import Unsupported
from conformance.trees import tree_map

from .layers import Params

PARTS = ("encoder", "decoder")  # canonical names start with the part they belong to


class NumpySeq2Seq:
    backend = "numpy"
    framework_version = np.__version__
    device = "cpu"

    def __init__(self, encoder, decoder, weights: dict[str, np.ndarray], dtype: str):
        self.encoder, self.decoder = encoder, decoder
        self.dtype = dtype  # "float64" or "float32": the weights' dtype, so every computation's
        self.weights = {name: np.array(w, dtype=dtype) for name, w in weights.items()}

    # The d2l interface, on the model's own weights.
    def encode(self, src, src_valid_len):
        return self.encoder(Params(self.weights, "encoder"), source(src, self.weights), lengths(src_valid_len))

    def init_state(self, enc_outputs, src_valid_len):
        return self.decoder.init_state(Params(self.weights, "decoder"), enc_outputs, lengths(src_valid_len))

    def decode(self, tgt, state):
        return self.decoder(Params(self.weights, "decoder"), np.asarray(tgt), state)

    def forward(self, src, tgt, src_valid_len):
        return self.logits(self.weights, src, tgt, src_valid_len)

    def logits(self, weights, src, tgt, src_valid_len):
        """EncoderDecoder.forward on any weights: NumPy arrays, or torch tensors for autograd."""
        src, tgt, src_valid_len = source(src, weights), np.asarray(tgt), lengths(src_valid_len)
        enc_outputs = self.encoder(Params(weights, "encoder"), src, src_valid_len)
        state = self.decoder.init_state(Params(weights, "decoder"), enc_outputs, src_valid_len)
        return self.decoder(Params(weights, "decoder"), tgt, state)[0]

    # The state is NumPy already; copies, so a snapshot cannot share memory with the model's arrays.
    def to_numpy(self, tree):
        return tree_map(np.copy, tree)

    def from_numpy(self, tree):
        return tree_map(np.copy, tree)

    # Weights and gradients, {"encoder": {name: array}, "decoder": {name: array}} by canonical name;
    # BatchNorm's running statistics are buffers, not trained (conformance.canonical.is_buffer).
    def get_weights(self):
        return by_part({name: w.copy() for name, w in self.weights.items() if not is_buffer(name)})

    def get_buffers(self):
        return by_part({name: w.copy() for name, w in self.weights.items() if is_buffer(name)})

    def set_weights(self, weights):
        for named in weights.values():
            for name, w in named.items():
                if np.shape(w) != self.weights[name].shape:
                    raise ValueError(f"{name} has shape {np.shape(w)}, not {self.weights[name].shape}")
                self.weights[name] = np.array(w, dtype=self.dtype)

    def gradients(self, src, tgt, src_valid_len, cotangent):
        """d sum(logits * cotangent) / d every weight: torch autograd through this package's code."""
        torch = autodiff()
        weights = {name: torch.tensor(w, requires_grad=not is_buffer(name)) for name, w in self.weights.items()}
        logits = self.logits(weights, src, tgt, src_valid_len)
        torch.sum(logits * torch.as_tensor(np.asarray(cotangent), dtype=logits.dtype)).backward()
        return by_part({name: np.zeros_like(self.weights[name]) if w.grad is None else w.grad.numpy()
                        for name, w in weights.items() if not is_buffer(name)})


def source(src, weights: dict):
    """Token ids as a NumPy array (inputs, never differentiated); frames and images in the namespace and
    dtype of the weights, so that torch autograd runs through the encoder's first layer too."""
    src = np.asarray(src)
    if not np.issubdtype(src.dtype, np.floating):
        return src
    like = next(iter(weights.values()))
    return array_namespace(like).asarray(src, dtype=like.dtype)


def lengths(src_valid_len):
    """The valid lengths as an array, or None for a source that has none (images)."""
    return None if src_valid_len is None else np.asarray(src_valid_len)


def autodiff():
    """PyTorch, which differentiates the specification; Unsupported, saying so, where it is missing."""
    try:
        import torch
    except ImportError as exc:
        raise Unsupported(f"NumPy has no autodiff: the specification's gradients come from PyTorch autograd "
                          f"through its own code, and torch cannot be imported here ({exc})") from None
    return torch


def by_part(weights: dict) -> dict[str, dict]:
    return {part: {name: w for name, w in weights.items() if name.startswith(f"{part}.")} for part in PARTS}
