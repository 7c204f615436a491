"""Determinism: in evaluation mode the same call gives the same numbers (dropout is off), and leaves
the model as it found it (no running statistics updated)."""
import numpy as np
import pytest

from conformance.inputs import CASES, random_batch


@pytest.mark.parametrize("case", CASES, ids=str)
def test_eval_calls_agree_exactly(model, check, rng, case):
    """Two identical calls of EncoderDecoder.forward, and of stepwise decoding, agree bit for bit."""
    batch = random_batch(rng, model, case)
    check.identical(model.forward(batch), model.forward(batch), "second forward call")
    check.identical(model.chunked(batch, 1)[0], model.chunked(batch, 1)[0], "second stepwise decode")


def held_arrays(model) -> dict[str, np.ndarray]:
    """{"encoder parameter blks.0.ffn.0.weight": array, "decoder buffer ...": array, ...}"""
    held = {"parameter": model.get_weights(), "buffer": model.get_buffers()}
    return {f"{part} {kind} {name}": array for kind, parts in held.items() for part, named in parts.items()
            for name, array in named.items()}


def test_eval_calls_leave_model_unchanged(model, check, rng):
    """EncoderDecoder.forward and stepwise decoding (encoder, init_state, decoder) leave every trainable
    parameter and every buffer (BatchNorm running statistics, counters, frozen tables) bit for bit as
    they were: evaluation updates nothing."""
    before = held_arrays(model)
    batch = random_batch(rng, model, CASES[1])
    model.forward(batch)
    model.chunked(batch, 1)
    after = held_arrays(model)
    changed = [f"{name} ({np.sum(after[name] != value) if after[name].shape == value.shape else 'reshaped'})"
               for name, value in before.items() if not np.array_equal(after.get(name, value), value, equal_nan=True)]
    if changed or after.keys() != before.keys():
        gone, new = sorted(before.keys() - after.keys()), sorted(after.keys() - before.keys())
        check.fail(f"evaluation-mode calls changed {len(changed)} of the model's {len(before)} arrays (values changed): "
                   f"{', '.join(changed)}{f'; removed {gone}' if gone else ''}{f'; added {new}' if new else ''}")
