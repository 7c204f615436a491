"""Golden vectors: per family, committed canonical weights, inputs, and what the NumPy specification
computes from them (teacher-forced logits, greedy tokens and each greedy step's logits). They catch
a change of the specification itself, and check an implementation with no NumPy code in its loop.

    python -m conformance.golden                    # regenerate conformance/golden/ from impls/numpy
    python -m conformance.golden --family=speech    # only these families (another BLAS rounds the others anew)
    python -m conformance.golden --check            # the drift per family; exit 1 if the spec moved

The files' SHA-256 checksums are committed beside them (SHA256SUMS, as `sha256sum` writes it): a
changed byte is reported as a damaged file, by name, before any model is built from it.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import pathlib
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

from . import canonical, tolerances
from .assertions import relative_error
from .inputs import Batch, Case, random_batch
from .spec import FAMILIES, ModelSpec

DIR = pathlib.Path(__file__).parent / "golden"
SEED = 20261202  # weights and inputs; fixed, unlike --conformance-seed
CASE = Case(3, 6, 5)  # ragged sources: row 0 full, the others padded
GREEDY_STEPS = 8
# Smaller than the suite's default spec, so the committed files stay small (280 KB for all six).
SIZES = {"embed_size": 8, "num_hiddens": 16, "ffn_num_hiddens": 32, "num_heads": 2}
SPECIFICATION = "conformance_impls.numpy:factory"


@dataclasses.dataclass
class Vectors:
    batch: Batch
    logits: np.ndarray  # teacher-forced, (batch, tgt_steps, tgt_vocab)
    tokens: np.ndarray  # greedy from batch.tgt[:, :1], (batch, 1 + GREEDY_STEPS)
    step_logits: np.ndarray  # each greedy step's logits, (GREEDY_STEPS, batch, tgt_vocab)


def weights_path(family: str) -> pathlib.Path:
    return DIR / f"{family}.weights.safetensors"


def vectors_path(family: str) -> pathlib.Path:
    return DIR / f"{family}.vectors.safetensors"


class DamagedFile(ValueError):
    """A golden file that is not the one committed: changed, cut short or missing."""


def checksums_path() -> pathlib.Path:
    return DIR / "SHA256SUMS"


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_checksums() -> None:
    lines = [f"{sha256(path)}  {path.name}" for path in sorted(DIR.glob("*.safetensors"))]
    checksums_path().write_text("\n".join(lines) + "\n")


def verify(path: pathlib.Path) -> pathlib.Path:
    """`path` if it is the committed file, else DamagedFile naming it and what is wrong."""
    committed = dict(reversed(line.split(maxsplit=1)) for line in checksums_path().read_text().splitlines() if line.strip())
    if path.name not in committed:
        raise DamagedFile(f"{path} has no committed checksum in {checksums_path()}")
    if not path.is_file():
        raise DamagedFile(f"{path} is missing")
    actual = sha256(path)
    if actual != committed[path.name]:
        raise DamagedFile(
            f"{path} is not the committed file: its SHA-256 is {actual[:16]}..., the committed one {committed[path.name][:16]}... "
            f"({path.stat().st_size} bytes); restore it from the repository or the package, or regenerate every golden "
            "file with `python -m conformance.golden`")
    return path


def inputs(family: str) -> Batch:
    return random_batch(np.random.default_rng(SEED), specification_model(family), CASE)


def compute(model, batch: Batch) -> Vectors:
    """`model` is a conformance.harness.CheckedModel built from the golden weights."""
    tokens, step_logits = model.greedy(batch, GREEDY_STEPS)
    return Vectors(batch, model.teacher_forced(batch), tokens, np.stack(step_logits))


def load(family: str) -> Vectors:
    path = verify(vectors_path(family))
    try:
        arrays = load_file(str(path))
    except Exception as exc:  # safetensors' own error type: a file that matches its checksum but does not parse
        raise DamagedFile(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    batch = Batch(arrays["src"], arrays.get("src_valid_len"), arrays["tgt"])  # images have no lengths
    return Vectors(batch, arrays["logits"], arrays["tokens"], arrays["step_logits"])


def save(family: str, vectors: Vectors) -> None:
    b = vectors.batch
    arrays = {"src": b.src, "src_valid_len": b.src_valid_len, "tgt": b.tgt, "logits": vectors.logits,
              "tokens": vectors.tokens, "step_logits": vectors.step_logits}
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items() if v is not None}, str(vectors_path(family)))


def specification_model(family: str):
    """The NumPy specification built from the golden weights, in float64."""
    from . import loading
    from .harness import CheckedModel

    built = loading.build(loading.resolve(SPECIFICATION), ModelSpec(family, weights=str(verify(weights_path(family))), **SIZES))
    if not isinstance(built, CheckedModel):
        raise RuntimeError(f"the specification cannot be built for {family}: {built.reason}")
    return built


def drift(family: str) -> float:
    """Max relative difference between the committed logits and what the specification computes now."""
    golden = load(family)
    now = compute(specification_model(family), golden.batch)
    return max(relative_error(now.logits, golden.logits)[0], relative_error(now.step_logits, golden.step_logits)[0],
               0.0 if np.array_equal(now.tokens, golden.tokens) else np.inf)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--family", default=",".join(FAMILIES), help="comma-separated (default: every family)")
    args = parser.parse_args(argv)
    worst = 0.0
    for family in args.family.split(","):
        if args.check:
            try:
                moved = drift(family)
            except DamagedFile as exc:
                moved = np.inf
                print(f"{family}: {exc}")
            else:
                print(f"{family}: max relative drift {moved:.2e}")
            worst = max(worst, moved)
            continue
        DIR.mkdir(exist_ok=True)
        canonical.save(weights_path(family), canonical.random_weights(ModelSpec(family, **SIZES), seed=SEED))
        write_checksums()  # the specification reads the weights just written
        save(family, compute(specification_model(family), inputs(family)))
        print(f"wrote {weights_path(family).name}, {vectors_path(family).name}")
    if not args.check:
        write_checksums()
        print(f"wrote {checksums_path().name}")
    return int(worst > tolerances.AGREE["float64"])  # another machine's BLAS may round differently


if __name__ == "__main__":
    sys.exit(main())
