"""Benchmark the merge base and HEAD with asv in this environment; exit 1 on a regression.

    python benchmarks/compare.py                                   # merge-base(origin/main or main, HEAD) vs HEAD
    python benchmarks/compare.py --base REV --head REV --factor 1.2 --rounds 3 --bench REGEX

asv cannot build per-commit environments here (torch 2.13.0+cpu, TensorFlow and MXNet are GBs
installed in a fixed order), and `asv continuous` refuses an existing environment. So each commit
is checked out into a temporary git worktree and measured in the current interpreter with
`asv run --python=same --set-commit-hash=SHA`, PYTHONPATH pointing at that worktree so `impls` and
`conformance` come from the commit under test. The benchmark code is HEAD's for both sides, so asv
compares like with like. Rounds alternate the order (base, head, head, base, ...) and append their
samples, so load drifting on shared cores falls on both sides. `asv compare --factor F` marks a
benchmark worse only when it is slower by more than F and the two sample sets differ statistically;
any such row, or a benchmark that fails at HEAD only, exits 1.

Defaults come from measured noise on our 2 shared cores: one thread and
CPU-time clocks (BENCH_THREADS=1, BENCH_TIMER=process) because two OpenMP threads on cores other
jobs also use lose whole scheduler slices at every barrier; factor 1.2, above the worst
same-vs-same ratio we measured and below the 1.3 slowdown we must catch (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_BENCH = r"GreedyDecode\.time_greedy_decode\('{backends}', '(gru|transformer)', (1|32), 'cpu', 128\)"
BACKENDS = ("torch", "tensorflow", "mxnet")


def git(*args, cwd=ROOT):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def default_base():
    for ref in ("origin/main", "main"):
        if subprocess.run(["git", "rev-parse", "--verify", "-q", ref], cwd=ROOT, capture_output=True).returncode == 0:
            return ref
    raise SystemExit("no origin/main or main: pass --base")


def check_imports_from(tree, env):
    """PYTHONPATH must win over the editable install of the main checkout, or both sides are one code."""
    where = subprocess.run([sys.executable, "-c", "import impls; print(impls.__file__)"], env=env, cwd=tree,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not pathlib.Path(where).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"impls imports from {where}, not from the worktree {tree}")


def decoding_backends(tree, env):
    """Backends whose impl package at this tree defines greedy_decode (others would only skip)."""
    found = []
    for backend in BACKENDS:
        probe = f"import impls.{backend} as p, sys; sys.exit(0 if hasattr(p, 'greedy_decode') else 1)"
        if subprocess.run([sys.executable, "-c", probe], env=env, cwd=tree, capture_output=True).returncode == 0:
            found.append(backend)
    return found


def asv(config, *args, env=None, check=True):
    cmd = [sys.executable, "-m", "asv", *args, "--config", str(config)]
    print("$", " ".join(cmd[2:]), flush=True)
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        print(result.stdout, result.stderr, sep="\n")
        raise SystemExit(f"asv {args[0]} failed ({result.returncode})")
    return result.stdout


def regressions(table: str) -> list[str]:
    """Rows of `asv compare --only-changed` marked worse ('+') or newly failing ('!')."""
    return [line for line in table.splitlines() if re.match(r"^\|\s*[+!]\s*\|", line)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="base revision; default: merge base of origin/main (or main) and --head")
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--factor", type=float, default=1.2, help="slower by more than this counts (default 1.2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating asv runs per commit (default 3)")
    parser.add_argument("--bench", help="asv --bench regex; default: GreedyDecode at 128 steps, gru and "
                                         "transformer, batch 1 and 32, cpu, every backend with greedy_decode")
    parser.add_argument("--threads", default="1", help="BENCH_THREADS for the runs (default 1)")
    parser.add_argument("--timer", default="process", choices=["process", "wall"], help="BENCH_TIMER (default process)")
    parser.add_argument("--results-dir", help="keep asv results here (default: a temporary directory)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` removes the worktrees

    head = git("rev-parse", args.head)
    base = git("rev-parse", args.base) if args.base else git("merge-base", default_base(), head)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-compare-"))
    trees = {}
    try:
        for sha in dict.fromkeys((base, head)):
            trees[sha] = work / sha[:12]
            git("worktree", "add", "--detach", str(trees[sha]), sha)
        results = pathlib.Path(args.results_dir).resolve() if args.results_dir else work / "results"
        config = work / "asv.conf.json"
        config.write_text(json.dumps(dict(
            version=1, project="seq2seq-conformance", repo=str(ROOT), branches=["main"], dvcs="git",
            environment_type="existing", pythons=["same"], launch_method="spawn",
            benchmark_dir=str(trees[head] / "benchmarks"), results_dir=str(results), html_dir=str(work / "html"),
            env_dir=str(work / "env"),
        )))
        envs = {}
        for sha, tree in trees.items():
            envs[sha] = dict(os.environ, PYTHONPATH=str(tree), ASV_PYTHONPATH=str(tree), BENCH_IMPLS_ROOT=str(tree),
                             BENCH_THREADS=args.threads, BENCH_TIMER=args.timer)
            check_imports_from(tree, envs[sha])
        bench = args.bench or DEFAULT_BENCH.format(backends="|".join(decoding_backends(trees[head], envs[head])) or "none")
        print(f"base {base[:12]}  head {head[:12]}  factor {args.factor}  rounds {args.rounds}  "
              f"threads {args.threads}  timer {args.timer}\nbench {bench}", flush=True)
        asv(config, "machine", "--yes")
        for r in range(args.rounds):
            order = (base, head) if r % 2 == 0 else (head, base)
            for sha in dict.fromkeys(order):
                asv(config, "run", "--python=same", f"--set-commit-hash={sha}", "--bench", bench,
                    "--append-samples", "--record-samples", env=envs[sha])
        table = asv(config, "compare", "--split", "--factor", str(args.factor), base, head)
        print("\n".join(line for line in table.splitlines() if line.count(" n/a ") < 2))  # drop unrun combinations
        worse = regressions(asv(config, "compare", "--only-changed", "--factor", str(args.factor), base, head))
    finally:
        for tree in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    if worse:
        print(f"PERFORMANCE DECREASED by more than a factor {args.factor}:", *worse, sep="\n")
        return 1
    print(f"No benchmark slower by more than a factor {args.factor}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
