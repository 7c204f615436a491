"""Turn a `python -m benchmarks.ratios --json` run into docs/throughput.png and docs/throughput.md.

    python -m benchmarks.ratios --json docs/benchmarks.json
    python benchmarks/plot.py docs/benchmarks.json [--out docs/throughput] [--readme README.md]

The Markdown holds the machine, the workload, tokens/s by backend x family x batch (cached and
full-prefix recompute), the peers side by side, every target with its measured ratio, and seconds
per token by decode length. tokens/s = batch * steps / seconds, medians over interleaved passes.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys


BEGIN, END = "<!-- throughput:begin (benchmarks/plot.py --readme) -->", "<!-- throughput:end -->"


def _rows(run, table):
    return [r for r in run["rows"] if r["table"] == table]


def machine_line(run):
    m = run["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return (f"{m['cpu']}, {m['cores']} cores available, {m['threads']} threads per framework, "
            f"Python {m['python']}; {versions}")


def markdown(run):
    repeats = "; ".join(f"{table} {r['passes']} pass(es) of {r['calls']} call(s) per contender"
                        for table, r in run["repeats"].items())
    lines = [f"Machine: {machine_line(run)}.", "",
             f"Workload: {run['workload']}. Contenders called in turn; medians over calls, then over passes "
             f"({repeats}).", ""]
    cache = _rows(run, "cache")
    if cache:
        lines += [f"Tokens/s, greedy decoding of {cache[0]['steps']} tokens (encoder included):", "",
                  "| backend | family | batch | cached | recompute | cached / recompute |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in cache:
            t = r["tokens_per_s"]
            lines.append(f"| {r['backend']} | {r['family']} | {r['batch']} | {t['cached']:,.0f} | "
                         f"{t['recompute']:,.0f} | {r['ratio']:.1f}x |")
        lines.append("")
    peer_rows = _rows(run, "peers")
    if peer_rows:
        lines += [f"Reference Transformers (and speech models) against each peer, interleaved in pairs, tokens/s, "
                  f"{peer_rows[0]['steps']} tokens:", "",
                  "| backend | batch | peer | peer tokens/s | reference tokens/s | reference / peer |",
                  "|---|---:|---|---:|---:|---:|"]
        for r in peer_rows:
            t = r["tokens_per_s"]
            lines.append(f"| {r['backend']} | {r['batch']} | {r['slow']} | {t[r['slow']]:,.0f} | "
                         f"{t['reference']:,.0f} | {r['ratio']:.2f}x |")
        lines.append("")
    targets = [r for r in peer_rows if r["target"] is not None]
    if targets:
        lines += ["Each pair is its own measurement (a peer's thread pools never run beside a third contender), so "
                  "the reference's tokens/s differ between rows.", "",
                  "Targets (ratio within each pass, median over passes):", "",
                  "| backend | batch | ratio | of | target | met |", "|---|---:|---:|---|---:|---|"]
        for r in targets:
            lines.append(f"| {r['backend']} | {r['batch']} | {r['ratio']:.2f}x | {r['fast']} / {r['slow']} | "
                         f"{r['target']}x | {'yes' if r['met'] else '**no**'} |")
        lines.append("")
    if cache:
        low = min(cache, key=lambda r: r["ratio"])
        missed = [f"{r['backend']} {r['family']} batch {r['batch']}" for r in cache if not r["met"]]
        lines += [f"Cached ≥ {low['target']}x full-prefix recompute at {low['steps']} tokens: "
                  f"{len(cache) - len(missed)} of {len(cache)} met"
                  + (f" (**missed: {', '.join(missed)}**)" if missed else "")
                  + f"; lowest {low['ratio']:.1f}x ({low['backend']} {low['family']}, batch {low['batch']}).", ""]
    lengths = _rows(run, "lengths")
    if lengths:
        steps = list(lengths[0]["seconds_per_token"])
        lines += ["Cached decoders, µs per token by decode length ((decode − encode) / (batch × steps); n/a: "
                  "the decode measured no slower than the encoder alone):", "",
                  "| backend | family | batch | " + " | ".join(steps) + " |",
                  "|---|---|---:|" + "---:|" * len(steps)]
        for r in lengths:
            lines.append(f"| {r['backend']} | {r['family']} | {r['batch']} | "
                         + " | ".join(_micro(r["seconds_per_token"][n]) for n in steps) + " |")
        lines.append("")
    return "\n".join(lines)


def _micro(seconds):
    return "n/a" if seconds is None else f"{1e6 * seconds:.1f}"


def plot(run, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cache = _rows(run, "cache")
    batches = sorted({r["batch"] for r in cache})
    fig, axes = plt.subplots(len(batches), 1, figsize=(13.5, 3.8 * len(batches)), squeeze=False)
    for ax, batch in zip(axes[:, 0], batches):
        rows = [r for r in cache if r["batch"] == batch]
        x = range(len(rows))
        for offset, mode, color in ((-0.2, "cached", "tab:blue"), (0.2, "recompute", "tab:orange")):
            ax.bar([i + offset for i in x], [r["tokens_per_s"][mode] for r in rows], width=0.4, color=color,
                   label=mode)
        ax.set_xticks(list(x), [f"{r['backend']}\n{r['family']}" for r in rows], fontsize=6.5)
        ax.set_yscale("log")
        ax.set_ylabel("tokens / s (log)")
        ax.set_title(f"batch {batch}, {rows[0]['steps']} greedy tokens: cached vs full-prefix recompute")
        ax.legend(loc="upper right", fontsize=8)
    fig.text(0.01, 0.005, f"{run['machine']['cpu']}, {run['machine']['threads']} threads; {run['workload']}",
             fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the JSON written by python -m benchmarks.ratios --json")
    parser.add_argument("--out", default="docs/throughput", help="output path without suffix")
    parser.add_argument("--readme", help=f"also replace the text between {BEGIN} and {END} in this file")
    args = parser.parse_args(argv)
    run = json.loads(pathlib.Path(args.run).read_text())
    if "rows" not in run:
        parser.error(f"{args.run} is not a `python -m benchmarks.ratios --json` run"
                     + (": for pytest-benchmark's JSON, `python -m benchmarks.loops`" if "benchmarks" in run else ""))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if _rows(run, "cache"):
        plot(run, out.with_suffix(".png"))
    text = markdown(run)
    out.with_suffix(".md").write_text(text)
    if args.readme:
        readme = pathlib.Path(args.readme)
        before, rest = readme.read_text().split(BEGIN, 1)
        readme.write_text(before + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
