"""The interface loops beside the native loop, tokens/s, from `pytest benchmarks/ --impl` runs.

    env -u OMP_NUM_THREADS BENCH_THREADS=1 BENCH_ROUNDS=3 \
        pytest benchmarks/ --impl=torch --loop=eager,compiled,native --benchmark-only --benchmark-json=torch.json
    python -m benchmarks.loops torch.json tensorflow.json mxnet.json

Prints a Markdown table: a row per family, a column per implementation and batch, each cell the
tokens/s (batch * steps / median seconds) of the loops timed, "interface-eager / interface-compiled /
native" (those present in the runs), "–" for a loop not offered; a compiled loop that fell back to
eager is marked with a letter, its reason below the table; then the machine each file was measured on.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys


def tokens_per_s(bench) -> float:
    return bench["extra_info"]["tokens"] / bench["stats"]["median"]


LOOPS = ("interface-eager", "interface-compiled", "native")  # columns' order; "interface" is interface-eager


def table(runs: list[dict]) -> str:
    cells, columns, families, fell_back = {}, {}, {}, {}
    for run in runs:
        for bench in run["benchmarks"]:
            info = bench["extra_info"]
            if "loop" not in info:  # a backend-keyed case, not an --impl one
                continue
            column = (info["impl"], info["batch"])
            columns[column] = None
            families[info["family"]] = None
            loop = {"interface": "interface-eager"}.get(info["loop"].split()[0], info["loop"].split()[0])
            figure = f"{tokens_per_s(bench):,.0f}"
            if loop == "interface-compiled" and info.get("how", "").startswith("eager"):
                mark = fell_back.setdefault(info["how"], chr(ord("a") + len(fell_back)))
                figure += f" ({mark})"
            cells[(info["family"], column, loop)] = figure
    timed = [loop for loop in LOOPS if any(key[2] == loop for key in cells)]
    ordered = sorted(columns, key=lambda c: (list(dict.fromkeys(i for i, _ in columns)).index(c[0]), c[1]))

    def cell(family, column):
        return " / ".join(cells.get((family, column, loop), "–") for loop in timed)

    lines = [f"Tokens/s, {' / '.join(timed)}:", "",
             "| family | " + " | ".join(f"{impl} B{batch}" for impl, batch in ordered) + " |",
             "|---|" + "---:|" * len(ordered)]
    lines += [f"| {family} | " + " | ".join(cell(family, c) for c in ordered) + " |" for family in families]
    lines += [""] * bool(fell_back) + [f"({mark}) interface-compiled ran {how}" for how, mark in fell_back.items()]
    return "\n".join(lines)


def machine(run: dict) -> str:
    m = run["machine_info"]
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    return f"{m.get('cpu_model') or m.get('cpu', {}).get('brand_raw', '?')}; {m.get('workload', '')}; {versions}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=pathlib.Path, help="pytest-benchmark JSON files")
    args = parser.parse_args(argv)
    runs = [json.loads(path.read_text()) for path in args.runs]
    print(table(runs))
    print()
    for path, run in zip(args.runs, runs):
        print(f"- {path.name}: {machine(run)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
