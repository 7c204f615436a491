"""Prove that compare passes an unchanged commit and flags a slowed one, `--runs` times each.

    python -m benchmarks.regression_selftest --impl=tests.tricky.torch_models:tied_embeddings --runs 5
    python -m conformance_benchmarks.regression_selftest --impl=mypkg.models:make_model   # your model, your machine
    python -m benchmarks.regression_selftest --backend torch                              # our references
    python -m benchmarks.regression_selftest --backend tensorflow --steps 32              # compare's options pass through

With `--impl`, a user's repository is made in a temporary directory: `usermodel.py`, whose
`make_model` is the named factory (importable from where this runs), committed; then one commit
changing only a comment, and one whose decoder makes `slowdown` of its calls twice, evenly spread:
real extra work of the model's own kind, so the decode loop gets slower by a little less than
`slowdown` (the encoder and the loop's argmax are untouched; each run prints the ratio measured).
A spin after every call, as below, is no good here: between tiny decoder steps it also slows the
steps after it (cold caches), so the slowdown it makes is larger than the one it names. compare runs
inside that repository with `--impl=usermodel:make_model`, as in a user's CI, base against each
commit. Without `--impl`, the two commits go on top of this checkout's HEAD (in a temporary
worktree: no branch moves), compare times that reference (`impls.<backend>`), and the slow commit makes
its `greedy_decode` (the native loop) spin after each call for `slowdown` times that call's own CPU
time: one call per decode, so nothing comes after the spin within the timed decode.

Exits 0 only if every unchanged run passes (compare exit 0) and every slowed one is flagged
(exit 1); prints each run's ratios (median over pairs of head / base, per case).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from conformance.loading import BUILTIN

from . import compare

SUITE = compare.SUITE

SLOW_NATIVE = '''

# --- regression_selftest: greedy_decode {slowdown:.0%} slower ------------------------------------
import time as _time


def _spin_after(call, slowdown):
    """`call`, then as much CPU time again times `slowdown`: a slower version of the same work."""
    def slowed(*args, **kwargs):
        start = _time.process_time()
        out = call(*args, **kwargs)
        until = _time.process_time() + slowdown * (_time.process_time() - start)
        while _time.process_time() < until:
            pass
        return out
    return slowed


greedy_decode = _spin_after(greedy_decode, {slowdown!r})
'''

USER_MODEL = '''"""A user's model: {factory}, as a module of the user's repository."""
import importlib

_factory = getattr(importlib.import_module("{module}"), "{attr}")


def make_model(spec):
    return _factory(spec)
'''

SLOW_MODEL = '''

# --- regression_selftest: the decoder {slowdown:.0%} slower: that share of its calls made twice ------
import math as _math

from conformance import Declared


def _twice_for_a_share(call, share):
    """`call`, made once more (the result dropped) for `share` of the calls, evenly spread: the same
    work, `share` more of it. The suite's state-reuse contract is what makes a second call on one state safe."""
    calls = 0

    def slowed(*args, **kwargs):
        nonlocal calls
        calls += 1
        if _math.floor(calls * share) > _math.floor((calls - 1) * share):
            call(*args, **kwargs)
        return call(*args, **kwargs)
    return slowed


_unslowed_make_model = make_model


def make_model(spec):
    made = _unslowed_make_model(spec)
    decoder = (made.model if isinstance(made, Declared) else made).decoder
    name = "forward" if hasattr(decoder, "forward") else "call"  # torch and Gluon; Keras
    setattr(decoder, name, _twice_for_a_share(getattr(decoder, name), {slowdown!r}))
    return made
'''


def git(*args, cwd):
    return compare.git(*args, cwd=cwd)


def commit(tree, message):
    ident = ["-c", "user.name=regression-selftest", "-c", "user.email=selftest@localhost"]
    git(*ident, "commit", "--quiet", "--no-verify", "-am", message, cwd=tree)
    return git("rev-parse", "HEAD", cwd=tree)


def changed_commits(tree, path, slow_code, slowdown):
    """(comment-only commit, slowed commit) on top of `tree`'s HEAD, changing `path`."""
    path.write_text(path.read_text() + "\n# regression_selftest: a comment-only change\n")
    unchanged = commit(tree, "throwaway: comment only")
    path.write_text(path.read_text() + slow_code.format(slowdown=slowdown))
    return unchanged, commit(tree, f"throwaway: {slowdown:.0%} slower")


def user_repository(where: pathlib.Path, factory: str, slowdown: float):
    """A git repository at `where` holding usermodel.py: (base, unchanged, slowed) commits."""
    module, attr = factory.split(":", 1)
    where.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=where)
    (where / "usermodel.py").write_text(USER_MODEL.format(factory=factory, module=module, attr=attr))
    git("add", "usermodel.py", cwd=where)
    base = commit(where, "a user's model")
    return (base, *changed_commits(where, where / "usermodel.py", SLOW_MODEL, slowdown))


def reference_commits(work: pathlib.Path, backend: str, slowdown: float):
    """(HEAD, unchanged, slowed) of this checkout; the two new commits made in a temporary worktree."""
    head = git("rev-parse", "HEAD", cwd=SUITE)
    if git("status", "--porcelain", "--untracked-files=no", cwd=SUITE):
        print("note: uncommitted changes are not part of HEAD and are not measured", flush=True)
    tree = work / "tree"
    git("worktree", "add", "--detach", str(tree), head, cwd=SUITE)
    try:
        path = tree / "impls" / backend / "decoding.py"  # where greedy_decode is defined, by convention
        if not path.exists():
            raise SystemExit(f"{path.relative_to(tree)} not found: nothing to slow down")
        return (head, *changed_commits(tree, path, SLOW_NATIVE, slowdown))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=SUITE, capture_output=True)


def gate(base, head, cwd, options, env, work) -> tuple[int, list[str]]:
    """compare's exit code and its ratios, head / base per case."""
    results = work / "gate.json"
    results.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", f"{__package__}.compare", f"--base={base}", f"--head={head}", f"--json={results}",
           *options]
    run = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    print(run.stdout[-6000:], run.stderr[-3000:] if run.returncode not in (0, 1) else "", sep="", flush=True)
    cases = json.loads(results.read_text())["cases"] if results.exists() else []
    return run.returncode, [f"{c['ratio']:.3f}" for c in cases if c["status"] == "compared"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", help="module:factory to prove the gate on, in a scratch repository of its own")
    parser.add_argument("--backend", default="torch", help="without --impl: the reference to slow down")
    parser.add_argument("--family", default="gru,transformer", help="families (default gru,transformer)")
    parser.add_argument("--slowdown", type=float, default=0.15)
    parser.add_argument("--runs", type=int, default=1, help="gate runs on each commit (default 1)")
    parser.add_argument("--factor", type=float, default=None, help="passed to compare (default: its own)")
    args, args.compare = parser.parse_known_args(argv)  # the rest is compare's (--batch, --steps, --seconds, ...)

    work = pathlib.Path(tempfile.mkdtemp(prefix="regression-selftest-"))
    try:
        return prove(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prove(args, work) -> int:
    options = [f"--family={args.family}", *args.compare] + ([f"--factor={args.factor}"] if args.factor is not None else [])
    if args.impl:
        base, unchanged, slowed = user_repository(work / "repo", args.impl, args.slowdown)
        cwd = work / "repo"
        options += ["--impl=usermodel:make_model"]
        # The factory is importable from here (as `python -m` finds it): so it is in the user's repository.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    else:
        base, unchanged, slowed = reference_commits(work, args.backend, args.slowdown)
        cwd, env = SUITE, None
        options += [f"--impl={compare.checkout_name(BUILTIN[args.backend])}"]

    verdicts = []
    for label, sha, expected in (("unchanged", unchanged, 0), (f"{args.slowdown:.0%} slower", slowed, 1)):
        for run in range(1, args.runs + 1):
            print(f"\n=== {label}, run {run}/{args.runs}: compare --base {base[:12]} --head {sha[:12]} "
                  f"(expect exit {expected})", flush=True)
            got, ratios = gate(base, sha, cwd, options, env, work)
            verdicts.append((label, run, got, expected, ratios))

    print()
    for label, run, got, expected, ratios in verdicts:
        print(f"{label:>12s} run {run}: exit {got}, expected {expected}: {'ok' if got == expected else 'WRONG'}; "
              f"ratios {' '.join(ratios)}")
    return 0 if all(got == expected for _, _, got, expected, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
