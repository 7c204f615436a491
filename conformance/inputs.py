"""Input batches: the named shape cases every contract runs on, and seeded token data."""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Case:
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
    src: np.ndarray  # (batch, src_steps) int64
    src_valid_len: np.ndarray  # (batch,) int64, 1..src_steps
    tgt: np.ndarray  # (batch, tgt_steps) int64

    def take(self, index) -> "Batch":
        """The examples at `index` (a list of row numbers, repeats allowed), in that order."""
        index = np.asarray(index)
        return Batch(self.src[index], self.src_valid_len[index], self.tgt[index])

    def with_tgt(self, tgt) -> "Batch":
        return dataclasses.replace(self, tgt=np.asarray(tgt, dtype=np.int64))

    def with_src(self, src, src_valid_len=None) -> "Batch":
        lens = self.src_valid_len if src_valid_len is None else src_valid_len
        return dataclasses.replace(self, src=np.asarray(src, dtype=np.int64), src_valid_len=lens)


def random_tokens(rng: np.random.Generator, vocab: Vocabulary, side: str, shape) -> np.ndarray:
    """Ordinary ids of `side`, uniformly."""
    return rng.choice(vocab.ordinary(side), size=shape).astype(np.int64)


def random_batch(rng: np.random.Generator, vocab: Vocabulary, case: Case, full_first: bool = True) -> Batch:
    """Uniform ordinary tokens, after the start id where the model declared one; ragged valid lengths.
    The first example fills the source unless told not to."""
    lens = rng.integers(1, case.src_steps + 1, size=case.batch)
    if full_first:
        lens[0] = case.src_steps
    return Batch(
        src=random_tokens(rng, vocab, "src", (case.batch, case.src_steps)),
        src_valid_len=lens.astype(np.int64),
        tgt=vocab.started(random_tokens(rng, vocab, "tgt", (case.batch, case.tgt_steps))),
    )


def other_tokens(rng: np.random.Generator, tokens: np.ndarray, vocab: Vocabulary, side: str) -> np.ndarray:
    """Ordinary tokens that differ from `tokens` (ordinary ones) at every position."""
    ordinary = vocab.ordinary(side)
    shift = rng.integers(1, len(ordinary), size=tokens.shape)
    return ordinary[(np.searchsorted(ordinary, tokens) + shift) % len(ordinary)]
