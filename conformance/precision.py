"""The precision a model really computes in, which its logits' dtype does not tell.

A float64 model may round like float32 in places (OpenNMT-py calls `scores.float()` before its
softmax). Its two computations of the same thing then differ by float32 rounding, and float64
tolerances would call that a bug. The probe moves every weight along one random direction by a step
h so small that the logits move by only ~1e-7 of their scale, and measures the second difference

    L(w + h d) + L(w - h d) - 2 L(w)

relative to the first, (L(w + h d) - L(w - h d)) / 2. For a smooth function computed in float64 it
is curvature, ~1e-7, plus rounding, ~1e-16 / 1e-7 = 1e-9. Rounding to float32 anywhere on the way
(steps of ~6e-8 of the rounded values) is not linear in h and shows as ~1e-1. A model whose rounding
noise stays below ~1e-11 of the logits reads as float64, and then float64 tolerances hold for it.
A ReLU kink within h of some unit's input makes one direction nonlinear too (rarely: h moves the
logits by 1e-7), so a second direction decides: float32 rounding shows along every direction.

Noise is nonlinear too: a forward pass that is random in evaluation mode (dropout left on) would read
as rounding, so the probe runs only on a forward pass that repeats bit for bit
(conformance/repeatability.py), and otherwise keeps the model's dtype and says why.
"""
from __future__ import annotations

import numpy as np

from .harness import CheckedModel, ConformanceError
from .inputs import Case, random_batch
from .repeatability import describe

TARGET_CHANGE = 1e-7  # how far the probe moves the logits, relative to their scale
NONLINEAR = 1e-4  # second difference / first difference above which the model rounds like float32


def nonlinearity(model: CheckedModel, rng: np.random.Generator) -> float:
    """max|L(h) + L(-h) - 2 L(0)| / max|L(h) - L(-h)| / 2 at a step h calibrated to TARGET_CHANGE."""
    batch = random_batch(rng, model, Case(3, 6, 5))
    with model.weights_restored() as weights:
        direction = {part: {name: rng.standard_normal(w.shape) for name, w in named.items()} for part, named in weights.items()}

        def logits_at(h: float) -> np.ndarray:
            model.set_weights({
                part: {name: (w + h * direction[part][name]).astype(w.dtype) for name, w in named.items()}
                for part, named in weights.items()
            })
            return model.forward(batch).astype(np.float64)

        base = logits_at(0.0)
        scale = max(1.0, float(np.max(np.abs(base))))
        probe = 1e-4
        slope = np.max(np.abs(logits_at(probe) - logits_at(-probe))) / (2 * probe)
        if slope == 0:
            return 0.0  # the logits do not depend on the weights; the contracts will say so
        h = TARGET_CHANGE * scale / slope
        up, down = logits_at(h), logits_at(-h)
    first = np.max(np.abs(up - down)) / 2
    return float(np.max(np.abs(up + down - 2 * base)) / first) if first else np.inf


def effective_precision(model: CheckedModel, seed: int) -> tuple[str, str]:
    """(precision whose tolerances apply, a note for the report when it is not the model's dtype)."""
    if model.dtype != "float64":
        return model.dtype, ""
    noise = model.randomness.get("forward", 0.0)
    if noise:
        return model.dtype, f"precision not measured: {describe('forward', noise)}"
    rng = np.random.default_rng([seed, 7])
    try:
        measured = nonlinearity(model, rng)
        if measured > NONLINEAR:
            measured = min(measured, nonlinearity(model, rng))
    except ConformanceError as exc:
        return model.dtype, f"precision not measured: {exc}"
    if measured <= NONLINEAR:
        return model.dtype, ""
    return "float32", (
        f"float64 requested, computes like float32 in places (probe nonlinearity {measured:.1e} > {NONLINEAR:.0e}): "
        "float32 tolerances"
    )
