"""The protocol every implementation under test is seen through.

A factory may return a raw framework model that follows the d2l interface (a bridge in
`conformance.bridges` wraps it), or any object implementing `Seq2SeqAdapter` itself.
Contracts only ever talk to this protocol: numpy in, numpy out, framework state opaque.

Conventions
- Token arrays are integer numpy arrays: `src` (batch, src_steps), `tgt` (batch, tgt_steps);
  `src_valid_len` (batch,) holds how many leading source tokens are real (1..src_steps).
- The source is of the family's kind (conformance/sources.py): token ids as above; feature frames
  `src` (batch, frames, num_features) in the model's float dtype, `src_valid_len` in frames; images
  `src` (batch, channels, height, width) in the model's float dtype, with `src_valid_len=None`
  (an image has no length: a bridge calls a framework model without it, `encoder(X)`,
  `decoder.init_state(enc_outputs)`, `model(X, Y)`).
- Encoder outputs and decoder state are native framework trees (tuples, lists, dicts, None,
  scalars, arrays, and objects with a state codec: `conformance.register_state_codec`).
  `to_numpy` / `from_numpy` convert them leaf by leaf (`conformance.trees.tree_map` sees through
  codecs), keeping the structure, so a contract can look at shapes, snapshot them, or reorder the
  batch as beam search does. Any other object left in a converted tree fails the contracts that
  look into it.
- Weights and gradients are `{"encoder": {name: array}, "decoder": {name: array}}`: every trainable
  parameter once, a tied one under the part where it is first found.
- Optional: `get_buffers() -> Params`, copies of every array the model holds besides its trainable
  parameters (BatchNorm running statistics, frozen tables, counters), in the same layout. The
  bridges offer it; an adapter without it has the contract that an evaluation-mode call leaves the
  model unchanged skipped, saying so. (Not part of the runtime-checked protocol below.)
- Vocabulary sizes and reserved ids are the spec's unless the factory returned `Declared(...)`.
- The model is in evaluation mode (dropout off) for every call, gradients included.
- A method may raise `conformance.Unsupported("why")` for a call the implementation does not offer
  (`gradients` where nothing differentiates the model): the contracts that need it are skipped
  with that reason, the others still run.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

Tree = Any  # nested tuples / lists / dicts / None / arrays / Python scalars
Params = dict[str, dict[str, np.ndarray]]


@runtime_checkable
class Seq2SeqAdapter(Protocol):
    backend: str  # "torch", "tensorflow", "mxnet", ...
    framework_version: str
    device: str  # where the model runs, "cpu" or "cuda:N": the spec's device, or the suite declines it
    dtype: str  # floating dtype the model computes in: "float64" or "float32"

    def encode(self, src: np.ndarray, src_valid_len: np.ndarray | None) -> Tree:
        """Encoder.forward(X, valid_lens)."""

    def init_state(self, enc_outputs: Tree, src_valid_len: np.ndarray | None) -> Tree:
        """Decoder.init_state(enc_outputs, valid_lens)."""

    def decode(self, tgt: np.ndarray, state: Tree) -> tuple[np.ndarray, Tree]:
        """Decoder.forward(X, state) -> (logits (batch, steps, tgt_vocab), next state)."""

    def forward(self, src: np.ndarray, tgt: np.ndarray, src_valid_len: np.ndarray | None) -> np.ndarray:
        """EncoderDecoder.forward(enc_X, dec_X, valid_lens) -> logits."""

    def to_numpy(self, tree: Tree) -> Tree:
        """Copy a native tree to numpy, leaf by leaf; non-array leaves are kept as they are."""

    def from_numpy(self, tree: Tree) -> Tree:
        """The inverse of `to_numpy`."""

    def gradients(
        self, src: np.ndarray, tgt: np.ndarray, src_valid_len: np.ndarray | None, cotangent: np.ndarray
    ) -> Params:
        """d sum(forward(src, tgt, src_valid_len) * cotangent) / d every parameter."""

    def get_weights(self) -> Params:
        """Copies of every trainable parameter, each once."""

    def set_weights(self, weights: Params) -> None:
        """Load parameters of the shapes `get_weights` returned."""
