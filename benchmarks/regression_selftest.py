"""Prove that compare.py flags a 30% slowdown and passes an unchanged commit.

    python benchmarks/regression_selftest.py                    # torch, gru and transformer, B 1 and 32
    python benchmarks/regression_selftest.py --backend mxnet --slowdown 0.3 --rounds 3

Two throwaway commits are made on top of HEAD in a temporary worktree (no branch moves, nothing
pushed): one whose only change is a comment, and one whose `impls.<backend>.greedy_decode` spins
for `slowdown` times its own CPU time after every call: real extra work, seen by the wall and the
CPU-time clocks alike. compare.py then measures HEAD against each, and this script exits 0 only
if the unchanged commit passes (exit 0) and the slow one is flagged (exit 1).
"""
from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]

SPIN = '''

# --- regression_selftest: an injected slowdown of {slowdown:.0%} --------------------------------
import time as _time

_unslowed_greedy_decode = greedy_decode


def greedy_decode(*args, **kwargs):
    start = _time.process_time()
    tokens = _unslowed_greedy_decode(*args, **kwargs)
    until = _time.process_time() + {slowdown!r} * (_time.process_time() - start)
    while _time.process_time() < until:
        pass
    return tokens
'''


def git(*args, cwd=ROOT):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit(tree, message):
    ident = ["-c", "user.name=regression-selftest", "-c", "user.email=selftest@localhost"]
    git(*ident, "commit", "--quiet", "--no-verify", "-am", message, cwd=tree)
    return git("rev-parse", "HEAD", cwd=tree)


def decoding_module(tree, backend):
    """The file that defines the backend's greedy_decode (impls/<backend>/decoding.py by convention)."""
    path = tree / "impls" / backend / "decoding.py"
    if not path.exists():
        raise SystemExit(f"{path.relative_to(tree)} not found: nothing to slow down")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--slowdown", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--factor", type=float, default=None, help="passed to compare.py (default: its own)")
    args = parser.parse_args(argv)

    head = git("rev-parse", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        print("note: uncommitted changes are not part of HEAD and are not measured", flush=True)
    bench = (rf"GreedyDecode\.time_greedy_decode\('{args.backend}', '(gru|transformer)', (1|32), 'cpu', 128\)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="regression-selftest-"))
    tree = work / "tree"
    git("worktree", "add", "--detach", str(tree), head)
    try:
        module = decoding_module(tree, args.backend)
        module.write_text(module.read_text() + "\n# regression_selftest: a comment-only change\n")
        unchanged = commit(tree, "throwaway: comment only")
        module.write_text(module.read_text() + SPIN.format(slowdown=args.slowdown))
        slowed = commit(tree, f"throwaway: greedy_decode {args.slowdown:.0%} slower")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)

    verdicts = {}
    for label, sha, expected in (("unchanged", unchanged, 0), (f"{args.slowdown:.0%} slower", slowed, 1)):
        cmd = [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--base", head, "--head", sha,
               "--bench", bench, "--rounds", str(args.rounds)]
        if args.factor is not None:
            cmd += ["--factor", str(args.factor)]
        print(f"\n=== {label}: compare.py --base {head[:12]} --head {sha[:12]} (expect exit {expected})", flush=True)
        verdicts[label] = (subprocess.run(cmd, cwd=ROOT).returncode, expected)

    print()
    for label, (got, expected) in verdicts.items():
        print(f"{label:>12s}: compare.py exit {got}, expected {expected}: {'ok' if got == expected else 'WRONG'}")
    return 0 if all(got == expected for got, expected in verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
