"""Directional derivatives by central differences, with the rounding noise measured, not assumed.

    slope(h) = (L(w + h d) - L(w - h d)) / 2h  ->  grad L . d   as h -> 0

Three things spoil a quotient: truncation and ReLU kinks inside [-h, h] (they grow with h), and
the rounding of L (it grows as 1/h). The rounding is measured along the direction itself, as the
second difference L(w + k delta d) + L(w - k delta d) - 2 L(w) at steps so small that curvature
leaves nothing there; that also covers a float64 model that rounds like float32 in places. A
quotient is used once it agrees with the one at half its step to a quarter of the tolerance.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

NOISE_MARGIN = 10  # measured rounding of L, from three samples, times this


@dataclasses.dataclass
class Slope:
    numeric: float  # the settled quotient
    noise: float  # the rounding it may carry
    step: float


def rounding_of(loss: Callable[[float], float], delta: float, eps: float) -> float:
    """max over k = 1, 2, 3 of |L(k delta) + L(-k delta) - 2 L(0)| / 2, and at least one ulp of L(0)."""
    base = loss(0.0)
    measured = max(abs(loss(k * delta) + loss(-k * delta) - 2 * base) / 2 for k in (1, 2, 3))
    return max(measured, eps * abs(base))


def settled_slope(loss: Callable[[float], float], steps, tolerance: float, eps: float) -> tuple[Slope | None, list[str]]:
    """The first quotient, from the largest step down, that agrees with the one at half its step.
    Returns (Slope, what was tried) or (None, what was tried)."""
    rounding = rounding_of(loss, steps[-1] / 300, eps)

    def quotient(h):
        return (loss(h) - loss(-h)) / (2 * h)

    tried = []
    for h in steps:
        coarse, fine = quotient(h), quotient(h / 2)
        noise = NOISE_MARGIN * rounding / (h / 2)
        if abs(coarse - fine) <= tolerance / 4 * abs(fine) + noise:
            return Slope(fine, noise, h / 2), tried
        tried.append(f"{coarse:.8g} at h={h:g} vs {fine:.8g} at h={h / 2:g} (noise {noise:.1e})")
    return None, tried


def steepest_of(directions: list[dict], gradient: dict) -> dict:
    """The direction along which the analytic slope is largest: a random direction nearly orthogonal
    to the gradient makes the slope small beside the curvature and the rounding, and relative errors
    of a correct gradient large."""
    return max(directions, key=lambda d: abs(sum(float(np.sum(gradient[name] * d[name])) for name in d)))
