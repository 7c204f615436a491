"""Time greedy decoding at the merge base and at HEAD, in turn; exit 1 when HEAD is slower.

    python -m conformance_benchmarks.compare --impl=mypkg.models:make_model   # in your repository, suite installed
    python -m benchmarks.compare --impl=mypkg.models:make_model               # the same from a checkout of the suite
    python -m benchmarks.compare                                              # this repository: our references
    ... [--base REV] [--head REV] [--family gru,transformer] [--batch 1,32] [--device cuda:0] [--path src]
        [--factor F] [--timeout SECONDS] [--json PATH]

Run in your repository with `--impl`, it times your factory at the merge base of origin/main (or
main, origin/master, master) and at HEAD of *that* repository: the interface loop
(conformance.decoding.greedy_tokens: encoder, init_state, one Decoder.forward per token) and, where
the factory's module exports `greedy_decode`, your native loop; 128 tokens, batch 1 and 32, on the cpu
(or --device, which reaches the factory in its spec), every family (a declined one is skipped, saying why). `--path` is where your modules are imported
from inside the repository (`src` for a src layout; default the top level). Without `--impl`, in a
checkout of this suite, it times our references that have a loop of their own (impls/<backend>
with greedy_decode) in gru and transformer.

Each commit is checked out into a temporary git worktree; for each case, two processes, one per
commit, import the code under test from their worktree first (and refuse it from anywhere else),
build the model once and time one decode at a time, called in turn (benchmarks/paired.py): one
thread, CPU-time clocks (BENCH_THREADS=1, BENCH_TIMER=process; wall clocks on a GPU). A case is
slower when the median over pairs of head / base exceeds --factor and a sign test says the pairs
lean that way (p < 0.01). A side that takes longer than --timeout to build or to decode once is
killed and fails. Exit 1: a case is slower, or fails or hangs at head only; exit 2: the gate could
not measure (nothing compared, code imported from outside the worktree), which must not pass
either; exit 0 otherwise. Defaults (factor, pairs, seconds per case) come from measured noise on 2
shared cores: see docs/benchmarks.md, and `regression_selftest` to measure your own machine.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

from conformance.loading import BUILTIN  # our references
from conformance.plugin import split_list  # how --impl values are split: comma-separated, repeatable
from conformance.spec import FAMILIES, device_name

from .paired import Case, measure

PACKAGE = pathlib.Path(__file__).resolve().parent  # benchmarks/ in a checkout, conformance_benchmarks installed
SUITE = PACKAGE.parent  # the suite's checkout, when there is one
BASE_REFS = ("origin/main", "main", "origin/master", "master")
REFERENCE_FAMILIES = "gru,transformer"
DEFAULT_FACTOR = 1.08
MIN_PAIRS, MAX_PAIRS, SECONDS = 20, 100, 15.0  # per case: at least MIN_PAIRS, then up to SECONDS of decoding
TIMEOUT = 300.0  # seconds for a side to build and warm up, and for each decode: longer is a hang


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def default_base(repo):
    for ref in BASE_REFS:
        if subprocess.run(["git", "rev-parse", "--verify", "-q", ref], cwd=repo, capture_output=True).returncode == 0:
            return ref
    raise SystemExit(f"none of {', '.join(BASE_REFS)} exists here: pass --base")


PROBE = """
import importlib, json, sys
found = {}
for target in sys.argv[1:]:
    name = target.split(':', 1)[0]
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # missing (this module or a parent) or failing to import
        missing = isinstance(exc, ModuleNotFoundError) and name.startswith(str(exc.name))
        found[target] = dict(file=None, native=False, error='' if missing else f'{type(exc).__name__}: {exc}')
        continue
    found[target] = dict(file=getattr(module, '__file__', None), native=callable(getattr(module, 'greedy_decode', None)),
                         error='')
print(json.dumps(found))
"""


def probe(targets, env, cwd) -> dict:
    """{module:factory: {file, native}} as a side's process imports them (its env, a neutral cwd)."""
    run = subprocess.run([sys.executable, "-c", PROBE, *targets], env=env, cwd=cwd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"importing {', '.join(targets)} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.splitlines()[-1])


def inside(path, tree) -> bool:
    return path is not None and pathlib.Path(path).resolve().is_relative_to(tree.resolve())


def checkout_name(target: str) -> str:
    """A built-in name's module:factory as this checkout spells it: impls/ installs as conformance_impls."""
    return target.replace("conformance_impls.", "impls.", 1)


def cases_to_time(names, trees, envs, cwd, families, batches, steps, device) -> list[Case]:
    """Each factory's module must come from each commit's worktree, or both sides would time one code.
    A module missing at base is new: nothing to compare it with. Native loops where head has one."""
    if any(":" not in name for name in names):
        raise SystemExit(f"--impl names a module:factory of the repository, not {', '.join(names)}: "
                         "the suite's own references are not part of your history")
    found = {sha: probe(names, envs[sha], cwd) for sha in trees}
    base, head = trees
    cases = []
    for name in names:
        for sha, tree in trees.items():
            where = found[sha][name]["file"]
            if where is not None and not inside(where, tree):
                raise SystemExit(f"{name} imports from {where}, not from the worktree {tree}: "
                                 "is it installed elsewhere? pass --path (e.g. --path src)")
        if found[head][name]["file"] is None:
            raise SystemExit(f"{name} at head {head[:12]}: {found[head][name]['error'] or 'no such module'}")
        if found[base][name]["file"] is None:
            print(f"{name} at base {base[:12]}: {found[base][name]['error'] or 'no such module'}; nothing to compare with.")
            continue
        loops = ("interface", "native") if found[head][name]["native"] else ("interface",)
        cases += [Case(name, family, batch, loop, steps, device)
                  for family in families for batch in batches for loop in loops]
    return cases


def report(results, factor) -> str:
    lines = ["| case | base | head | head / base | pairs | p (slower) | verdict |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if r.status == "compared":
            verdict = "SLOWER" if r.slower(factor) else "ok"
            lines.append(f"| {r.case} | {median_ms(r.base)} | {median_ms(r.head)} | {r.ratio:.3f} | {len(r.base)} | "
                         f"{r.p_slower:.1g} | {verdict} |")
        else:
            lines.append(f"| {r.case} | | | | | | {'FAILED AT HEAD' if r.slower(factor) else r.status}: "
                         f"{' '.join(r.reason.split())[:300]} |")
    return "\n".join(lines)


def median_ms(seconds) -> str:
    return f"{sorted(seconds)[len(seconds) // 2] * 1e3:.1f} ms"


def device_argument(text: str) -> str:
    try:
        return device_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv=None):
    """0: no case slower; 1: a case slower (or failing at head only); 2: the gate could not measure."""
    try:
        return gate(argv)
    except SystemExit as exc:
        if isinstance(exc.code, str):  # our own SystemExit(message), not argparse's exit status
            print(exc.code, file=sys.stderr)
            return 2
        raise


def gate(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", action="append", default=[],
                        help="module:factory of the repository the command runs in (comma-separated, repeatable)")
    parser.add_argument("--path", default=".", help="where --impl modules are imported from, inside the repository")
    parser.add_argument("--family", help=f"families (default: all with --impl, {REFERENCE_FAMILIES} for our references)")
    parser.add_argument("--batch", default="1,32", help="batch sizes (default 1,32)")
    parser.add_argument("--steps", type=int, default=128, help="tokens per decode (default 128)")
    parser.add_argument("--device", default="cpu", type=device_argument,
                        help="cpu, cuda or cuda:N, given to the factory in its spec (default cpu)")
    parser.add_argument("--base", help="base revision; default: merge base of origin/main (or main, ...) and --head")
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--factor", type=float, default=DEFAULT_FACTOR,
                        help=f"slower by more than this counts (default {DEFAULT_FACTOR})")
    parser.add_argument("--pairs", type=int, default=MIN_PAIRS, help=f"pairs per case, at least (default {MIN_PAIRS})")
    parser.add_argument("--max-pairs", type=int, default=MAX_PAIRS, help=f"pairs per case, at most (default {MAX_PAIRS})")
    parser.add_argument("--seconds", type=float, default=SECONDS,
                        help=f"decoding per case after --pairs, both sides together (default {SECONDS:g})")
    parser.add_argument("--timeout", type=float, default=TIMEOUT,
                        help=f"seconds a side may take to build, and to decode once; past it the side is killed and "
                             f"fails (default {TIMEOUT:g})")
    parser.add_argument("--threads", default="1", help="BENCH_THREADS for the runs (default 1)")
    parser.add_argument("--timer", choices=["process", "wall"],
                        help="BENCH_TIMER (default: process on the cpu; wall on a GPU, whose work no CPU clock counts)")
    parser.add_argument("--json", help="write every case's samples and verdict here")
    args = parser.parse_args(argv)
    args.timer = args.timer or ("process" if args.device == "cpu" else "wall")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` removes the worktrees

    names = split_list(args.impl)
    if names:
        repo = pathlib.Path(git("rev-parse", "--show-toplevel", cwd=os.getcwd()))
    elif (SUITE / "impls").is_dir():
        repo = SUITE
    else:
        raise SystemExit("--impl=module:factory names what to time (our references need a checkout of the suite)")
    head = git("rev-parse", args.head, cwd=repo)
    base = git("rev-parse", args.base, cwd=repo) if args.base else git("merge-base", default_base(repo), head, cwd=repo)
    families = split_list([args.family or (",".join(FAMILIES) if names else REFERENCE_FAMILIES)])
    batches = [int(b) for b in split_list([args.batch])]
    if base == head:
        print(f"base and head are one commit ({head[:12]}): nothing to compare.")
        return 0
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-compare-"))
    trees = {}
    try:
        for side, sha in (("base", base), ("head", head)):
            trees[sha] = work / side
            git("worktree", "add", "--detach", str(trees[sha]), sha, cwd=repo)
        envs = {}
        for sha, tree in trees.items():
            path = os.pathsep.join([str(tree / args.path), *filter(None, [os.environ.get("PYTHONPATH")])])
            envs[sha] = dict(os.environ, PYTHONPATH=path, BENCH_IMPLS_ROOT=str(tree), BENCH_THREADS=args.threads,
                             BENCH_TIMER=args.timer)
        if not names:  # our references with a loop of their own, whose framework is installed here
            names = [checkout_name(target) for target in BUILTIN.values()]
            names = [n for n, seen in probe(names, envs[head], work).items() if seen["native"]]
        cases = cases_to_time(names, trees, envs, work, families, batches, args.steps, args.device)
        print(f"repository {repo}\nbase {base[:12]}  head {head[:12]}  factor {args.factor}  "
              f"pairs {args.pairs}-{args.max_pairs} ({args.seconds:g} s)  threads {args.threads}  timer {args.timer}",
              flush=True)
        results = []
        for case in cases:
            results.append(measure(case, {"base": envs[base], "head": envs[head]}, work,
                                   args.pairs, args.max_pairs, args.seconds, args.timeout))
            print(report(results[-1:], args.factor).splitlines()[-1], flush=True)
    finally:
        for tree in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=repo, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print("\n" + report(results, args.factor))
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(dict(
            repository=str(repo), base=base, head=head, factor=args.factor,
            cases=[dict(case=str(r.case), status=r.status, reason=r.reason, base=r.base, head=r.head,
                        ratio=r.ratio if r.base else None, p_slower=r.p_slower if r.base else None,
                        slower=r.slower(args.factor)) for r in results]), indent=1))
    slower = [r for r in results if r.slower(args.factor)]
    compared = [r for r in results if r.status == "compared"]
    if slower:
        print(f"\nSLOWER by more than a factor {args.factor}: " + "; ".join(str(r.case) for r in slower))
        return 1
    if not compared and cases:
        print("\nNothing was measured at both commits: see the failures above (exit 2).")
        return 2
    print(f"\nNo case slower by more than a factor {args.factor} ({len(compared)} compared).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
