"""Helpers of the cross-framework contracts: the token comparison tells a tie from a disagreement, and
the difference matrix can be had in float32 from the command line."""
import numpy as np
import pytest

from conformance.assertions import Check
from conformance.harness import ContractFailure
from conformance.tolerances import AGREE

START, STEPS = 0, 3


def logits_leading_by(lead: float) -> list[np.ndarray]:
    """One row; at every step token 1 leads token 2 by `lead` (logits of scale 1), the rest behind."""
    step = np.zeros((1, 5))
    step[0, 1], step[0, 2] = 0.5, 0.5 - lead
    return [step.copy() for _ in range(STEPS)]


def test_parting_at_a_tie_passes():
    expected = np.array([[START, 1, 1, 1]])
    chose_the_other = np.array([[START, 2, 4, 4]])  # and went its own way after it
    Check("greedy", "float64", AGREE).same_tokens_unless_tied(chose_the_other, expected, logits_leading_by(1e-12), "tie")


def test_parting_without_a_tie_fails_naming_the_lead():
    expected = np.array([[START, 1, 1, 1]])
    parted = np.array([[START, 1, 2, 1]])
    with pytest.raises(ContractFailure, match=r"greedy token 2 of row 0 is 2, but should be 1, whose logit leads by 1\.00e-03"):
        Check("greedy", "float64", AGREE).same_tokens_unless_tied(parted, expected, logits_leading_by(1e-3), "no tie")


def test_difference_matrix_in_float32_from_the_command_line(capsys):
    """`python -m conformance.agreement`: the pairs' differences in a dtype the run does not use."""
    from conformance import agreement

    assert agreement.main(["--impl=numpy,torch", "--family=gru", "--dtype=float32"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| numpy vs torch |"))
    difference = float(row.split("|")[2].split()[0])  # "1.4e-07 (float32)"
    assert 0 < difference <= AGREE["float32"], row  # float32 rounding, and no more
