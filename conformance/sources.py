"""What a source is, in one place: token ids, feature frames or images.

The family says which kind of source a model reads (`KIND_OF`), the spec gives its sizes (the
source vocabulary; the feature count; channels, height and width), and what the model declared adds
the rest (reserved ids, encoder output lengths, a fixed width). A `Source` built from the three is
what every contract asks to draw a source, pad it, spoil it beyond the valid lengths, replace it or
give it a wrong size. A contract that does not apply to a source raises `NotApplicable` and is
skipped with the reason (out-of-vocabulary ids of frames, padding of an image).

| kind   | array                            | dtype             | valid lengths        |
|--------|----------------------------------|-------------------|----------------------|
| tokens | (batch, steps)                   | int64             | (batch,), in steps   |
| frames | (batch, frames, num_features)    | the model's float | (batch,), in frames  |
| images | (batch, channels, height, width) | the model's float | none                 |

Images have no lengths: an adapter gets `src_valid_len=None`, and a framework model is called
without them, as d2l's `*args` allows: `encoder(X)`, `decoder.init_state(enc_outputs)`,
`model(X, Y)`. Float sources are drawn as float32 values held in float64, so that a float32 model
reads exactly the numbers a float64 one does; the harness hands them over in the model's dtype.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

KINDS = ("tokens", "frames", "images")
KIND_OF = {"speech": "frames", "captioning": "images"}  # every other family reads token ids
SHORT_UTTERANCE = 3  # frames: shorter than a x4 subsampling, so less than one encoder position's worth
PROBE_LENGTHS = {"tokens": (1, 2, 3, 5, 8), "frames": (1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17)}
MAX_DRAWN_STEPS = {"tokens": 7, "frames": 23}  # the shape contract's random sources
STEP_NAME = {"tokens": "columns", "frames": "frames"}


class NotApplicable(Exception):
    """The contract does not apply to this source (out-of-vocabulary ids of frames): skipped, saying why."""


def kind_of(family: str) -> str:
    return KIND_OF.get(family, "tokens")


def same_lengths(lengths):
    """An encoder that keeps the time axis: as many outputs as source steps."""
    return lengths


def float32_values(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32).astype(np.float64)


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
    kind: str  # one of KINDS
    example_shape: tuple[int, ...]  # beyond batch and steps: () tokens, (num_features,), (channels, height, width)
    ids: np.ndarray  # tokens: the ordinary ids the suite draws
    vocab_size: int  # tokens: ids at or above it are out of vocabulary
    encoder_lengths: Callable = same_lengths  # source valid lengths -> encoder output lengths (declared)
    fixed_steps: int | None = None  # the only width the model takes (declared), or None for any

    @property
    def has_lengths(self) -> bool:
        return self.kind != "images"

    @property
    def step_name(self) -> str:
        return STEP_NAME.get(self.kind, "steps")

    @property
    def probe_lengths(self) -> np.ndarray:
        return np.array(PROBE_LENGTHS[self.kind], dtype=np.int64)

    # Which contracts apply.
    def needs_lengths(self, what: str) -> None:
        if not self.has_lengths:
            raise NotApplicable(f"an image has no valid length, so {what}")

    def needs_tokens(self, what: str) -> None:
        if self.kind != "tokens":
            raise NotApplicable(f"a source of {self.kind} holds no token ids, so {what}")

    def needs_any_width(self, what: str) -> None:
        if self.fixed_steps:
            raise NotApplicable(f"the model takes sources of exactly {self.fixed_steps} {self.kind == 'frames' and 'frames' or 'steps'} "
                                f"(Declared(fixed_src_steps={self.fixed_steps})), and {what} needs other widths")

    def encoder_lengths_of(self, lengths) -> np.ndarray:
        return np.asarray(self.encoder_lengths(np.array(lengths, dtype=np.int64)), dtype=np.int64)

    # Drawing.
    def steps(self, case_steps: int) -> int | None:
        """The source width of a shape case of `case_steps` steps: tokens as many; frames 4 S - 1 (3, 23,
        15 and 19 for the suite's cases): odd, never a multiple of 2 or 4, since lengths computed from
        the padded width come out right at multiples of the subsampling; images none (the spec's size)."""
        if self.fixed_steps:
            return self.fixed_steps
        return {"tokens": case_steps, "frames": 4 * case_steps - 1}.get(self.kind)

    def draw(self, rng: np.random.Generator, case, full_first: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(source, valid lengths) for a shape case; the first example fills the source unless told not to."""
        steps = self.steps(case.src_steps)
        lengths = self.lengths(rng, case.batch, steps, full_first)
        return self.values(rng, case.batch, steps), lengths

    def lengths(self, rng, batch: int, steps: int, full_first: bool) -> np.ndarray | None:
        if not self.has_lengths:
            return None
        lengths = rng.integers(1, steps + 1, size=batch)
        if self.kind == "frames" and batch >= 2:
            # Neighbours of very different lengths: an utterance shorter than the subsampling, the
            # others where the declared encoder length steps up, where rounding bugs show.
            lengths[1:-1] = rng.choice(self.stepping_lengths(steps), size=batch - 2)
            lengths[-1] = rng.integers(1, min(SHORT_UTTERANCE, steps) + 1)
        if full_first:
            lengths[0] = steps
        return lengths.astype(np.int64)

    def stepping_lengths(self, steps: int) -> np.ndarray:
        """Lengths L below `steps` whose encoder has one position fewer than L + 1's (all, without subsampling)."""
        below = np.arange(1, steps)
        stepping = below[self.encoder_lengths_of(below + 1) > self.encoder_lengths_of(below)]
        return stepping if stepping.size else np.arange(1, steps + 1)

    def values(self, rng, batch: int, steps: int | None) -> np.ndarray:
        """Ordinary token ids, uniformly; frames and images of unit scale (float32 values)."""
        if self.kind == "tokens":
            return rng.choice(self.ids, size=(batch, steps)).astype(np.int64)
        shape = (batch, steps, *self.example_shape) if self.kind == "frames" else (batch, *self.example_shape)
        return float32_values(rng.standard_normal(shape))

    def garbage(self, rng, shape) -> np.ndarray:
        """What the suite puts where a model must not look: any token id, reserved and padding ids
        included; frames of another scale and offset than real ones, so a leak is large."""
        if self.kind == "tokens":
            return rng.integers(0, self.vocab_size, size=shape)
        return float32_values(3 * rng.standard_normal(shape) + 1)

    # What the contracts do to a source.
    def padding_steps(self, steps: int) -> int:
        """How much padding the extra-padding contract adds to a source of `steps`: 3 token columns; frames
        up to the next multiple of 8 (1 to 8 frames). The cases' widths are odd and never multiples of 4,
        so one of the two widths is a multiple of 2, 4 and 8 and the other is not: lengths computed from
        the padded width, right at one of them only, then differ."""
        return 3 if self.kind == "tokens" else 8 - steps % 8

    def extra_steps(self, steps: int) -> int:
        """How many steps of padding make a source of `steps` show the encoder outputs' time axis: 3, or
        more until the declared encoder length changes."""
        extra = 3
        while extra < 64 and self.encoder_lengths_of([steps + extra]) == self.encoder_lengths_of([steps]):
            extra += 1
        return extra if extra < 64 else 3

    def padded(self, rng, src: np.ndarray, extra: int) -> np.ndarray:
        """`src` with `extra` more steps of garbage beyond every valid length."""
        return np.concatenate([src, self.garbage(rng, (len(src), extra, *self.example_shape))], axis=1)

    def spoiled_beyond(self, rng, src: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """`src` with garbage at every step beyond each example's valid length."""
        beyond = np.arange(src.shape[1])[None, :] >= lengths[:, None]
        beyond = beyond.reshape(beyond.shape + (1,) * len(self.example_shape))
        return np.where(beyond, self.garbage(rng, src.shape), src)

    def other(self, rng, src: np.ndarray) -> np.ndarray:
        """A source that differs from `src` everywhere: other ordinary ids, new frames, new images."""
        if self.kind == "tokens":
            shift = rng.integers(1, len(self.ids), size=src.shape)
            return self.ids[(np.searchsorted(self.ids, src) + shift) % len(self.ids)]
        return self.values(rng, src.shape[0], src.shape[1] if self.kind == "frames" else None)

    def resized(self, src: np.ndarray, where: str) -> tuple[str, np.ndarray]:
        """(what is wrong, `src` with one feature (frames) or channel (images) more or fewer). An image's
        height and width are not changed: a CNN that pools takes other sizes by design."""
        if self.kind == "tokens":
            raise NotApplicable("a token id has no feature or channel count (out_of_vocabulary_source_raises "
                                "checks what a token source can get wrong)")
        axis, name = (-1, "features per frame") if self.kind == "frames" else (1, "channels")
        size = src.shape[axis]
        if where == "more":
            resized = np.concatenate([src, np.take(src, [-1], axis=axis)], axis=axis)
        else:
            resized = np.take(src, np.arange(size - 1), axis=axis)
        return f"{resized.shape[axis]} {name} instead of {size}", resized

    def spec_sizes(self) -> str:
        """What the spec says this source is, for a model that cannot take it ('' for token ids)."""
        if self.kind == "frames":
            return f"frames (batch, frames, {self.example_shape[0]}): spec.num_features={self.example_shape[0]}"
        if self.kind == "images":
            c, h, w = self.example_shape
            return f"images (batch, {c}, {h}, {w}): spec.channels={c}, spec.height={h}, spec.width={w}"
        return ""

    def as_input(self, src: np.ndarray, dtype: str) -> np.ndarray:
        """What an adapter is handed: token ids as they are, float sources in the model's dtype."""
        return src if self.kind == "tokens" else np.asarray(src, dtype=dtype)


def example_shape(spec) -> tuple[int, ...]:
    """One example's shape beyond batch and steps, from the spec's sizes: () for token ids, (num_features,)
    for frames, (channels, height, width) for images."""
    return {"tokens": (), "frames": (spec.num_features,), "images": (spec.channels, spec.height, spec.width)}[
        kind_of(spec.family)]


def source_of(spec, vocab, encoder_lengths=None, fixed_steps=None) -> Source:
    """The source of `spec.family` with what the model declared (conformance.Declared); ValueError
    says what is inconsistent."""
    kind = kind_of(spec.family)
    shape = example_shape(spec)
    if kind == "images" and (encoder_lengths is not None or fixed_steps is not None):
        raise ValueError("encoder_lengths or fixed_src_steps for images, which have neither lengths nor steps")
    if fixed_steps is not None and (not isinstance(fixed_steps, (int, np.integer)) or fixed_steps < 1):
        raise ValueError(f"fixed_src_steps={fixed_steps!r}: a width is a positive integer")
    source = Source(kind, shape, vocab.ordinary("src"), vocab.src_size, encoder_lengths or same_lengths,
                    None if fixed_steps is None else int(fixed_steps))
    if encoder_lengths is not None:
        check_encoder_lengths(source)
    return source


def check_encoder_lengths(source: Source) -> None:
    """ValueError unless the declared encoder lengths map an int array to non-negative, non-decreasing ints."""
    lengths = np.arange(1, 65)
    try:
        out = source.encoder_lengths(lengths.copy())
        out_ints = np.asarray(out, dtype=np.int64)
    except Exception as exc:  # the user's function, whatever it raises
        raise ValueError(f"encoder_lengths raised {type(exc).__name__}: {exc} for the lengths 1..64") from None
    if out_ints.shape != lengths.shape or not np.array_equal(out_ints, np.asarray(out)):
        raise ValueError(f"encoder_lengths gave {np.asarray(out)!r} for the lengths 1..64: one integer per length")
    if (out_ints < 0).any() or (np.diff(out_ints) < 0).any():
        raise ValueError(f"encoder_lengths gave {out_ints.tolist()} for the lengths 1..64: non-negative, never fewer for a longer source")
