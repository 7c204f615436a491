"""Input batches: the named shape cases every contract runs on, and seeded data (the source of the
model's kind, conformance/sources.py; target token ids)."""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Case:
    """A batch size and lengths. `src_steps` counts a token source's steps; a frame source is 4 S - 1
    frames wide (conformance.sources.Source.steps), an image has the spec's size whatever S is."""

    batch: int
    src_steps: int
    tgt_steps: int

    def __str__(self) -> str:
        return f"B{self.batch}-S{self.src_steps}-T{self.tgt_steps}"


# Edge cases on purpose: a batch of one, a one-token source, a one-step target, and a batch as
# long as its sequences (a transposed axis then still has the right length: only values catch it).
CASES = (
    Case(1, 1, 1),
    Case(3, 6, 5),
    Case(4, 4, 4),
    Case(2, 5, 1),
)
MULTI_STEP = tuple(c for c in CASES if c.tgt_steps >= 2)  # a "before t" needs two steps
PADDED = tuple(c for c in CASES if c.src_steps >= 2)  # room for tokens beyond a valid length
BATCHED = tuple(c for c in CASES if c.batch >= 2)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """The token ids a model has on each side (0..size-1), and those with a special meaning (padding,
    BOS, EOS) that the suite never draws as ordinary tokens nor lets greedy decoding choose; `start`,
    if the model declared one, is the first target token of every decode from a fresh state."""

    src_size: int
    tgt_size: int
    reserved_src: frozenset[int] = frozenset()
    reserved_tgt: frozenset[int] = frozenset()
    start: int | None = None

    def size(self, side: str) -> int:
        return self.src_size if side == "src" else self.tgt_size

    def ordinary(self, side: str) -> np.ndarray:
        """The ids the suite draws on `side`, ascending."""
        ids = np.arange(self.size(side))
        special = self.reserved_src if side == "src" else self.reserved_tgt | {self.start}
        return ids[~np.isin(ids, [i for i in special if i is not None])]

    def started(self, tgt: np.ndarray) -> np.ndarray:
        """Targets that begin with the start id, where the model declared one (a copy)."""
        tgt = np.array(tgt, dtype=np.int64)
        if self.start is not None and tgt.shape[-1]:
            tgt[..., 0] = self.start
        return tgt

    def greedy(self, logits: np.ndarray) -> np.ndarray:
        """argmax over the last axis, among the ordinary target ids (a decoder never emits padding)."""
        ordinary = self.ordinary("tgt")
        return ordinary[np.argmax(logits[..., ordinary], axis=-1)]


@dataclasses.dataclass(frozen=True)
class Batch:
    src: np.ndarray  # the model's source kind (conformance/sources.py): (batch, src_steps) int64 token ids, ...
    src_valid_len: np.ndarray | None  # (batch,) int64, 1..src_steps; None for images, which have no lengths
    tgt: np.ndarray  # (batch, tgt_steps) int64

    def take(self, index) -> "Batch":
        """The examples at `index` (a list of row numbers, repeats allowed), in that order."""
        index = np.asarray(index)
        lengths = None if self.src_valid_len is None else self.src_valid_len[index]
        return Batch(self.src[index], lengths, self.tgt[index])

    def with_tgt(self, tgt) -> "Batch":
        return dataclasses.replace(self, tgt=np.asarray(tgt, dtype=np.int64))

    def with_src(self, src, src_valid_len=None) -> "Batch":
        lens = self.src_valid_len if src_valid_len is None else src_valid_len
        return dataclasses.replace(self, src=np.asarray(src), src_valid_len=lens)


def random_tokens(rng: np.random.Generator, vocab: Vocabulary, side: str, shape) -> np.ndarray:
    """Ordinary ids of `side`, uniformly."""
    return rng.choice(vocab.ordinary(side), size=shape).astype(np.int64)


def random_batch(rng: np.random.Generator, model, case: Case, full_first: bool = True) -> Batch:
    """A source of `model.source`'s kind with ragged valid lengths, and uniform ordinary target tokens of
    `model.vocab`, after the start id where the model declared one (`model`: a CheckedModel). The first
    example fills the source unless told not to."""
    src, lengths = model.source.draw(rng, case, full_first)
    return Batch(src, lengths, model.vocab.started(random_tokens(rng, model.vocab, "tgt", (case.batch, case.tgt_steps))))


def other_tokens(rng: np.random.Generator, tokens: np.ndarray, vocab: Vocabulary, side: str) -> np.ndarray:
    """Ordinary tokens that differ from `tokens` (ordinary ones) at every position."""
    ordinary = vocab.ordinary(side)
    shift = rng.integers(1, len(ordinary), size=tokens.shape)
    return ordinary[(np.searchsorted(ordinary, tokens) + shift) % len(ordinary)]
