"""Assertions that name the contract, the measured value, the bound, and where it broke."""
from __future__ import annotations

import numpy as np

from . import tolerances
from .harness import CannotJudge, ContractFailure
from .trees import array_leaves


def relative_error(actual: np.ndarray, expected: np.ndarray) -> tuple[float, tuple]:
    """max|actual - expected| / max(1, max|expected|), and the index of the worst element."""
    diff = np.abs(np.asarray(actual, dtype=np.float64) - np.asarray(expected, dtype=np.float64))
    if diff.size == 0:
        return 0.0, ()
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    scale = max(1.0, float(np.max(np.abs(expected))))
    return float(diff[worst]) / scale, tuple(int(i) for i in worst)


class Check:
    """Bound to one contract and one model; every failure message starts with the contract."""

    def __init__(self, contract: str, dtype: str, tolerance: dict = tolerances.CLOSE):
        self.contract = contract
        self.dtype = dtype
        self.tolerance = tolerance[dtype]

    def fail(self, message: str, compared: bool = False, measured: float | None = None):
        """`compared`: the failure is two computations of the same thing that disagree (by `measured`)."""
        raise ContractFailure(f"[{self.contract}] {message}", compared, measured)

    def cannot_judge(self, why: str, cause: str):
        """The contract cannot tell, because `why`; `cause` names the finding that explains it."""
        raise CannotJudge(f"[{self.contract}] could not judge: {why}", cause)

    def close(self, actual, expected, what: str, index_names=("batch", "step", "token")):
        """Equal up to rounding: the relative error stays within the dtype's tolerance."""
        if np.shape(actual) != np.shape(expected):
            self.fail(f"{what}: shape {np.shape(actual)}, but should be {np.shape(expected)}")
        error, worst = relative_error(actual, expected)
        if not error <= self.tolerance:
            where = ", ".join(f"{n}={i}" for n, i in zip(index_names, worst)) if index_names else f"index {worst}"
            self.fail(
                f"{what}: max relative error {error:.2e} > tolerance {self.tolerance:.0e} ({self.dtype})"
                f"{f'; worst at {where}: {np.asarray(actual)[worst]:.10g} vs {np.asarray(expected)[worst]:.10g}' if worst else ''}",
                compared=True, measured=error,
            )

    def same_tokens_unless_tied(self, actual, expected, expected_logits, what: str):
        """Greedy tokens equal up to each row's first difference, which must be a tie of the expected
        side's logits at that step (best two within the tolerance); the row is not compared after it."""
        for row in range(len(actual)):
            parted = np.flatnonzero(actual[row] != expected[row])
            if not parted.size:
                continue
            step = parted[0]
            logits = expected_logits[step - 1][row]  # the step that chose token `step`
            best, second = np.sort(logits)[-2:][::-1]
            lead = (best - second) / max(1.0, float(np.max(np.abs(logits))))
            if lead > 2 * self.tolerance:  # each side may be off by the tolerance
                self.fail(f"{what}: greedy token {step} of row {row} is {actual[row, step]}, but should be "
                          f"{expected[row, step]}, whose logit leads by {lead:.2e} > twice the tolerance "
                          f"{self.tolerance:.0e} ({self.dtype}), so no tie; tokens before: {expected[row, :step].tolist()}")

    def differ(self, a, b, what: str):
        """Distinguishable beyond rounding: more than the dtype's tolerance apart."""
        error, _ = relative_error(a, b)
        if not error > self.tolerance:
            self.fail(f"{what}: max relative difference {error:.2e} <= tolerance {self.tolerance:.0e}, so no effect")

    def identical(self, actual, expected, what: str):
        """Bit for bit: the same computation on the same inputs."""
        if np.shape(actual) != np.shape(expected) or not np.array_equal(actual, expected, equal_nan=True):
            error, worst = relative_error(actual, expected) if np.shape(actual) == np.shape(expected) else (np.inf, ())
            self.fail(f"{what}: not identical (max relative difference {error:.2e} at {worst}), but should be bit for bit",
                      compared=True, measured=error)

    def trees_identical(self, actual, expected, what: str):
        """Same structure, same array leaves bit for bit; names the first leaf that differs."""
        left, right = array_leaves(actual), array_leaves(expected)
        if [p for p, _ in left] != [p for p, _ in right]:
            self.fail(f"{what}: tree structure changed from {[p for p, _ in right]} to {[p for p, _ in left]}")
        for (path, a), (_, b) in zip(left, right):
            if a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b, equal_nan=True):
                change = f"shape {b.shape} -> {a.shape}" if a.shape != b.shape else f"{np.sum(a != b)} values changed"
                self.fail(f"{what}: leaf {path} was modified ({change})")
