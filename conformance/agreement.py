"""The difference matrix in one dtype, outside pytest: every pair of implementations built from the
same canonical weights, on the same inputs (the contracts' shape cases), max relative difference of
their teacher-forced logits. The conformance run reports float64 (or each model's own precision);
this answers "and in float32?".

    python -m conformance.agreement --impl=numpy,torch,tensorflow,mxnet --dtype=float32
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import numpy as np

from . import bridges, canonical, loading
from .harness import CheckedModel
from .inputs import CASES, random_batch
from .report import ImplInfo, Report
from .spec import FAMILIES, ModelSpec


def logits_per_case(impl: loading.Impl, family: str, dtype: str, weights: str) -> list[np.ndarray] | str:
    """Teacher-forced logits for every shape case, or why the model could not be built from the weights."""
    built = loading.build(impl, ModelSpec(family, dtype=dtype, weights=weights))
    if not isinstance(built, CheckedModel):
        return built.reason
    if not built.canonical_weights:
        return "does not declare that it loads canonical weights"
    rng = np.random.default_rng(0)
    return [built.teacher_forced(random_batch(rng, built, case)) for case in CASES]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", default="numpy,torch,tensorflow,mxnet", help="comma-separated, as for pytest --impl")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--family", default=",".join(FAMILIES))
    parser.add_argument("--seed", type=int, default=0, help="of the canonical weights")
    args = parser.parse_args(argv)
    bridges.limit_threads(1)
    impls = [loading.resolve(name) for name in args.impl.split(",")]
    report = Report(args.seed)  # its difference matrix is the conformance run's
    report.impls = {impl.name: ImplInfo(impl.name, impl.target) for impl in impls}
    folder = pathlib.Path(tempfile.mkdtemp(prefix="conformance-agreement-"))
    unusable = []
    for family in args.family.split(","):
        path = folder / f"{family}.safetensors"
        canonical.save(path, canonical.random_weights(ModelSpec(family), seed=args.seed))
        for impl in impls:
            logits = logits_per_case(impl, family, args.dtype, str(path))
            if isinstance(logits, str):
                unusable.append(f"{impl.name}, {family}: {logits}")
                continue
            for case, case_logits in zip(CASES, logits):
                report.add_logits(family, str(case), impl.name, args.dtype, case_logits)
    header, rows = report.render_differences()
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for line in unusable:
        print(f"not compared: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
