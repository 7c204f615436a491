"""What the suite asks a factory for: one model specification per family."""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Callable, Sequence

# Encoder/decoder pairings the suite knows. `mixed` pairs a Transformer encoder with a
# recurrent attention decoder: the architecture does not require both halves to share a kind.
# `speech` reads feature frames and `captioning` images instead of token ids (conformance/sources.py).
FAMILIES = ("rnn", "gru", "lstm", "bahdanau", "transformer", "mixed", "speech", "captioning")


class Unsupported(Exception):
    """Raised by a factory (or bridge) to decline a family, dtype or device; contracts are skipped with its message."""


def device_name(device: str) -> str:
    """"cpu" or "cuda:N", from what a user types ("cpu", "cuda", "cuda:1"); ValueError otherwise. Each
    framework's bridge says what the name means there (TensorFlow's /GPU:N, MXNet's mx.gpu(N))."""
    name = str(device).strip().lower()
    if name == "cuda":
        return "cuda:0"
    if name == "cpu" or re.fullmatch(r"cuda:[0-9]+", name):
        return name
    raise ValueError(f"device {device!r}: use cpu, cuda or cuda:N")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Hyper-parameters a factory receives. Vocabularies differ on purpose, so a swapped one shows."""

    family: str
    src_vocab: int = 23
    tgt_vocab: int = 29
    embed_size: int = 16
    num_hiddens: int = 32
    num_layers: int = 2
    num_heads: int = 4
    ffn_num_hiddens: int = 64
    dropout: float = 0.1  # non-zero so a model that ignores eval mode is caught
    dtype: str = "float64"  # "float64" or "float32"
    seed: int = 0
    max_len: int = 1024  # longest target a positional encoding must cover
    # A canonical safetensors file (docs/weights.md) to build the model from, or None for the
    # factory's own initialisation. Only the cross-framework contract sets it.
    weights: str | None = None
    # Where the model is built and run: "cpu" or "cuda:N". A factory may decline one it does not run
    # on (raise Unsupported); the bridge moves a torch or MXNet model there, as it casts the dtype.
    device: str = "cpu"
    # Sources that are not token ids (conformance/sources.py): feature frames (batch, frames,
    # num_features), images (batch, channels, height, width). Small, so the suite stays fast.
    num_features: int = 8
    channels: int = 3
    height: int = 16
    width: int = 16

    def __post_init__(self):
        object.__setattr__(self, "device", device_name(self.device))  # "cuda" means "cuda:0"

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Declared:
    """What a factory returns instead of the bare model when the model has properties the spec cannot
    know: `return Declared(model, src_vocab=32, tgt_vocab=32, reserved_tgt_ids=(0,))`.

    - `src_vocab`, `tgt_vocab`: the vocabulary sizes the model really has (one vocabulary shared by
      source and target is sized for both); logits then have `tgt_vocab` entries, and out-of-vocabulary
      ids are tested against these sizes. Default: the spec's.
    - `reserved_src_ids`, `reserved_tgt_ids`: ids with a special meaning (padding, BOS, EOS). The suite
      never draws them as ordinary tokens, and greedy decoding never chooses them.
    - `canonical_weights`: True when the model holds the weights of `spec.weights` (docs/weights.md).
      The cross-framework contract compares only such models; one that ignores the file is skipped.
    - `weights_id`: a name for the weights the model holds whatever `spec.weights` says (a checkpoint,
      a config and seed): an export and the model it came from declare the same one, and the
      cross-framework contracts compare them (`--reference` names one of them).
    How decoding starts and proceeds, where the model has its own rules:
    - `start_tgt_id`: the id every decode begins with (BART's decoder start 2, Marian's 1). Targets the
      suite feeds from a fresh state begin with it, greedy decoding starts from it, and it is drawn
      nowhere else nor chosen by greedy decoding. Default: none; the first target token is drawn.
    - `tokens_per_call`: the most target tokens one decoder call takes once the state has decoded
      (OpenNMT-py's cached decoder: 1). The first call from `init_state` still takes the whole target;
      contracts that need more per call are skipped, saying so, and the others decode on in such
      pieces. Default: any number.
    What the source is, beyond its kind and the spec's sizes (conformance/sources.py):
    - `encoder_lengths`: for an encoder that changes the time axis (a convolutional subsampling),
      the encoder's output lengths as a function of the source valid lengths, int array in, int
      array out: `lambda n: ((n - 1) // 2 + 1 - 1) // 2 + 1` for two stride-2 convolutions. Default:
      the source lengths themselves. The padding contracts compare encoder outputs within them.
    - `fixed_src_steps`: the model takes sources of exactly this many steps (frames) and no other
      (Whisper: 3000); the contracts that need another width are skipped, saying so.
    `model` is anything a factory may return: a framework model or a `Seq2SeqAdapter`.
    """

    model: Any
    src_vocab: int | None = None
    tgt_vocab: int | None = None
    reserved_src_ids: Sequence[int] = ()
    reserved_tgt_ids: Sequence[int] = ()
    canonical_weights: bool = False
    weights_id: str | None = None
    start_tgt_id: int | None = None
    tokens_per_call: int | None = None
    # What the source is beyond its kind and the spec's sizes (conformance/sources.py).
    encoder_lengths: Callable[[Any], Any] | None = None
    fixed_src_steps: int | None = None


def declares_canonical_weights(make_model):
    """Wraps a factory that loads `spec.weights` when given, so that it says so: the model it
    returns is then `Declared(model, canonical_weights=True)`. Callers of the bare `make_model`
    (code that wraps or changes the model) keep getting the model itself."""

    @functools.wraps(make_model)
    def factory(spec):
        model = make_model(spec)
        if spec.weights is None:
            return model
        if isinstance(model, Declared):  # what else it declares stays declared
            return dataclasses.replace(model, canonical_weights=True)
        return Declared(model, canonical_weights=True)

    return factory
