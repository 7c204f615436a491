"""Which calls of a model give the same numbers twice: measured once per model, before anything else.

Every other measurement compares two computations, so it rests on this one. A model random in
evaluation mode (dropout left on) reads as a float32 model to the precision probe, as "logits do not
depend on the weights" to finite differences, and as a bug to every comparison it fails; MXNet's fused
RNN drops out whenever autograd records, so only its gradients are random. So each path a contract can
call is run twice on one batch, and the largest relative difference of the two is kept:

    "decode":    encoder -> init_state -> decoder, one pass and one token per call
    "forward":   EncoderDecoder.forward
    "gradients": one backward pass

0.0 is bit for bit. A path whose calls raise or are declined is not measured (the contracts say why).
"""
from __future__ import annotations

import numpy as np

from .assertions import relative_error
from .harness import CheckedModel, ConformanceError
from .inputs import Case, random_batch

CALLS = {  # path -> the calls it names, as a sentence says them
    "decode": "encoder -> init_state -> decoder",
    "forward": "EncoderDecoder.forward",
    "gradients": "a backward pass",
}


def measure(model: CheckedModel, seed: int) -> dict[str, float]:
    """{path: max relative difference of two identical calls} for every path that could be called."""
    rng = np.random.default_rng([seed, 19])
    batch = random_batch(rng, model, Case(3, 6, 5))
    cotangent = rng.standard_normal((*batch.tgt.shape, model.vocab.tgt_size))
    runs = {
        "decode": lambda: [model.teacher_forced(batch), model.chunked(batch, 1)[0]],
        "forward": lambda: [model.forward(batch)],
        "gradients": lambda: [g for named in model.gradients(batch, cotangent).values() for g in named.values()],
    }
    measured = {}
    for path, run in runs.items():
        try:
            first, second = run(), run()
        except ConformanceError:
            continue
        measured[path] = max((relative_error(a, b)[0] if np.shape(a) == np.shape(b) else np.inf
                              for a, b in zip(first, second)), default=0.0)
    model.used.clear()
    return measured


def describe(path: str, difference: float) -> str:
    """'two identical calls of EncoderDecoder.forward differ by up to 3.1e-01 (relative)'."""
    calls = "backward passes" if path == "gradients" else f"calls of {CALLS[path]}"
    return f"two identical {calls} differ by up to {difference:.1e} (relative)"
