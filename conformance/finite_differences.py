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

from . import tolerances

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


@dataclasses.dataclass
class DirectionalCheck:
    analytic: float  # grad . d
    slope: Slope | None  # the settled finite difference, None if none settled
    tried: list[str]  # the quotients that did not settle
    tolerance: float

    @property
    def error(self) -> float:
        """|grad . d - slope| / |slope|."""
        return abs(self.analytic - self.slope.numeric) / abs(self.slope.numeric)

    @property
    def agrees(self) -> bool:
        return abs(self.analytic - self.slope.numeric) <= self.tolerance * abs(self.slope.numeric) + self.slope.noise


def directional_check(model, batch, cotangent: np.ndarray, gradients: dict, parts, rng: np.random.Generator) -> DirectionalCheck:
    """grad . d against central finite differences of L(w) = sum(forward(batch) * cotangent) along a random
    direction d of the parameters of `parts` ("encoder", "decoder"), the others held; `gradients` are the
    model's, {part: {name: array}}. The model's weights are restored afterwards."""
    steps, tolerance, directions = tolerances.FINITE_DIFFERENCE[model.precision].values()
    grads = {(part, name): g for part in parts for name, g in gradients[part].items()}
    tried, slope = [], None
    with model.weights_restored() as weights:
        for _ in range(directions):  # a direction whose quotients never settle (kinks) gives way to another
            direction = steepest_of([{(part, name): rng.standard_normal(w.shape) for part in parts
                                      for name, w in weights[part].items()} for _ in range(3)], grads)

            def loss(h):
                model.set_weights({part: {name: (w + h * direction[part, name]).astype(w.dtype) if (part, name) in direction else w
                                          for name, w in named.items()} for part, named in weights.items()})
                return float(np.sum(model.forward(batch).astype(np.float64) * cotangent))

            slope, attempts = settled_slope(loss, steps, tolerance, np.finfo(model.precision).eps)
            tried += attempts
            if slope:
                break
    analytic = float(sum(np.sum(grads[key] * d) for key, d in direction.items()))
    return DirectionalCheck(analytic, slope, tried, tolerance)


def wrong_gradients(model, batch, cotangent: np.ndarray, gradients: dict, rng: np.random.Generator) -> str:
    """Why the model's gradients of sum(forward(batch) * cotangent) cannot be trusted: they disagree with
    finite differences along a random direction of every parameter. '' where they agree, where finite
    differences do not settle, or where forward or backward passes do not even repeat (which says more)."""
    if model.randomness.get("forward") or model.randomness.get("gradients"):
        return ""
    found = directional_check(model, batch, cotangent, gradients, tuple(gradients), rng)
    if found.slope is None or found.agrees:
        return ""
    return (f"the model's gradients are wrong: along a random direction of all its parameters the gradient is "
            f"{found.analytic:.10g}, finite differences of its own logits give {found.slope.numeric:.10g} at "
            f"h={found.slope.step:g}: relative error {found.error:.2e} > {found.tolerance:.0e} ({model.precision})")
