"""The difference matrix in one dtype, outside pytest: every pair of implementations built from the
same canonical weights, on the same inputs (the contracts' shape cases), max relative difference of
their teacher-forced logits. The conformance run reports float64 (or each model's own precision);
this answers "and in float32?".

    python -m conformance.agreement --impl=numpy,torch,tensorflow,mxnet --dtype=float32
"""
from __future__ import annotations

import argparse
import itertools
import pathlib
import sys
import tempfile

import numpy as np

from . import bridges, canonical, loading
from .assertions import relative_error
from .harness import CheckedModel
from .inputs import CASES, random_batch
from .spec import FAMILIES, ModelSpec


def logits_per_case(impl: loading.Impl, family: str, dtype: str, weights: str) -> list[np.ndarray] | str:
    """Teacher-forced logits for every shape case, or why the model could not be built from the weights."""
    built = loading.build(impl, ModelSpec(family, dtype=dtype, weights=weights))
    if not isinstance(built, CheckedModel):
        return built.reason
    if not built.canonical_weights:
        return "does not declare that it loads canonical weights"
    rng = np.random.default_rng(0)
    return [built.teacher_forced(random_batch(rng, built.vocab, case)) for case in CASES]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", default="numpy,torch,tensorflow,mxnet", help="comma-separated, as for pytest --impl")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--family", default=",".join(FAMILIES))
    parser.add_argument("--seed", type=int, default=0, help="of the canonical weights")
    args = parser.parse_args(argv)
    bridges.limit_threads(1)
    impls = [loading.resolve(name) for name in args.impl.split(",")]
    families = args.family.split(",")
    folder = pathlib.Path(tempfile.mkdtemp(prefix="conformance-agreement-"))
    table: dict[tuple[str, str], list[str]] = {}
    for family in families:
        path = folder / f"{family}.safetensors"
        canonical.save(path, canonical.random_weights(ModelSpec(family), seed=args.seed))
        logits = {impl.name: logits_per_case(impl, family, args.dtype, str(path)) for impl in impls}
        for a, b in itertools.combinations(logits, 2):
            unusable = next((f"{n}: {v}" for n, v in ((a, logits[a]), (b, logits[b])) if isinstance(v, str)), None)
            cell = unusable or f"{max(relative_error(x, y)[0] for x, y in zip(logits[a], logits[b])):.1e}"
            table.setdefault((a, b), []).append(cell)
    print(f"| pair ({args.dtype}) | " + " | ".join(families) + " |")
    print("|---" * (len(families) + 1) + "|")
    for (a, b), cells in table.items():
        print(f"| {a} vs {b} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
