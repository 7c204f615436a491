"""What the suite asks a factory for: one model specification per family."""
from __future__ import annotations

import dataclasses

# Encoder/decoder pairings the suite knows. `mixed` pairs a Transformer encoder with a
# recurrent attention decoder: the architecture does not require both halves to share a kind.
FAMILIES = ("rnn", "gru", "lstm", "bahdanau", "transformer", "mixed")


class Unsupported(Exception):
    """Raised by a factory (or bridge) to decline a family or dtype; contracts are skipped with its message."""


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

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)
