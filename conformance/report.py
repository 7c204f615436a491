"""The conformance report: implementation x family x contract, in the terminal, JSON and Markdown."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import pathlib
import platform
import secrets
import sys
import time

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import numpy as np
from rich.console import Console
from rich.table import Table

from . import findings
from .assertions import relative_error
from .text import clean, code_span, markdown

# Worst first: a contract's cell shows the worst outcome over its shape cases. crashed: the model
# killed its process; hung: it ran past the timeout; not run: its model had crashed or hung before.
FAILING = ("crashed", "hung", "error", "failed")  # outcomes that fail the run
SEVERITY = ("crashed", "hung", "error", "failed", "not run", "xpassed", "xfailed", "passed", "skipped")
GLYPH = {"crashed": "C", "hung": "H", "error": "E", "failed": "✗", "not run": "-", "xpassed": "X", "xfailed": "x",
         "passed": "✓", "skipped": "s"}
STYLE = {"crashed": "bold red", "hung": "bold red", "error": "bold red", "failed": "bold red", "not run": "red",
         "xpassed": "yellow", "xfailed": "yellow", "passed": "green", "skipped": "dim"}
FAULTS = ("crashed", "hung", "error", "failed")  # listed with their messages in the Markdown report
INCOMPLETE = {
    "running": "INCOMPLETE: written while the run was going on, which ended before it finished the report (its "
               "process was killed, or a model ended a run in which nothing watched it: --no-conformance-supervisor)",
    "interrupted": "INCOMPLETE: the run was interrupted; contracts after that have no verdict",
}
DIFFERENCES_TITLE = ("Cross-framework differences: max relative difference of teacher-forced logits, "
                     "same canonical weights and inputs (float64 unless marked)")


@dataclasses.dataclass
class Result:
    nodeid: str
    impl: str
    family: str
    area: str
    contract: str
    case: str
    outcome: str
    message: str
    duration: float
    reproduce: str = ""  # the command that reruns a failed contract
    cause: str = ""  # where the model's behaviour names the cause of the failure (conformance/findings.py)


@dataclasses.dataclass
class ImplInfo:
    name: str
    target: str
    backend: str = "?"
    framework_version: str = "?"
    device: str = "?"
    dtypes: dict = dataclasses.field(default_factory=dict)  # family -> dtype used, with any note
    error: str = ""
    unusable: dict = dataclasses.field(default_factory=dict)  # family -> why no model could be used


class Report:
    def __init__(self, seed: int):
        self.seed = seed
        self.results: list[Result] = []
        self.impls: dict[str, ImplInfo] = {}
        self.crashes: list[str] = []  # "nodeid: signal in function (file:line)", one per crashed worker
        # (family, case) -> implementation -> (dtype, teacher-forced logits from canonical weights)
        self.logits: dict[tuple[str, str], dict[str, tuple[str, np.ndarray]]] = {}
        self.started = time.time()
        self.written = 0.0  # when write() last ran
        # "running" in every write before the last: a report left so was cut short (a serial run's
        # process crashed, or was killed); "interrupted" (Ctrl-C, SIGTERM) or "finished" at the end.
        self.status = "running"
        self.selected: int | None = None  # contracts selected to run, where known: each must get a verdict
        self.ended = ""  # status "crashed": how the run's process ended (conformance/supervisor.py)
        self.findings_problem = ""  # why the findings are missing, if they are

    def add(self, result: Result) -> None:
        result.message = clean(result.message, limit=1000)  # a model's part in it is cut at its source
        self.results.append(result)

    def add_logits(self, family: str, case: str, impl: str, dtype: str, logits) -> None:
        self.logits.setdefault((family, case), {})[impl] = (dtype, np.asarray(logits))

    def differences(self) -> dict[tuple[str, str], dict[str, tuple[float, str]]]:
        """(implementation, implementation) -> family -> (max relative difference of their logits over
        the shared cases, the dtypes compared): every pair that saw the same weights and inputs."""
        table: dict[tuple[str, str], dict[str, tuple[float, str]]] = {}
        order = list(self.impls)
        for (family, _case), by_impl in self.logits.items():
            names = sorted(by_impl, key=lambda name: order.index(name) if name in order else len(order))
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    (dtype_a, logits_a), (dtype_b, logits_b) = by_impl[a], by_impl[b]
                    error = relative_error(logits_a, logits_b)[0] if logits_a.shape == logits_b.shape else float("inf")
                    cell = table.setdefault((a, b), {})
                    if family not in cell or error > cell[family][0]:
                        cell[family] = (error, dtype_a if dtype_a == dtype_b else f"{dtype_a}/{dtype_b}")
        return table

    def render_differences(self) -> tuple[list[str], list[list[str]]]:
        """The difference matrix as (header, rows) of text: a pair per row, a family per column."""
        families = list(dict.fromkeys(family for family, _ in self.logits))
        rows = []
        for (a, b), by_family in self.differences().items():
            cells = []
            for family in families:
                error, dtypes = by_family.get(family, (None, ""))
                cells.append("" if error is None else f"{error:.1e}" + ("" if dtypes == "float64" else f" ({dtypes})"))
            rows.append([f"{a} vs {b}", *cells])
        return ["pair", *families], rows

    def cells(self) -> dict[tuple[str, str, str, str], str]:
        """(impl, family, area, contract) -> worst outcome over the cases."""
        cells: dict[tuple, str] = {}
        for r in self.results:
            key = (r.impl, r.family, r.area, r.contract)
            if key not in cells or SEVERITY.index(r.outcome) < SEVERITY.index(cells[key]):
                cells[key] = r.outcome
        return cells

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(SEVERITY, 0)
        for outcome in self.cells().values():
            out[outcome] += 1
        return out

    def impl_names(self) -> list[str]:
        """In --impl order (results from xdist workers arrive in any order), those with results."""
        seen = {r.impl for r in self.results}
        return [name for name in self.impls if name in seen] + sorted(seen - self.impls.keys())

    def families(self) -> list[str]:
        return list(dict.fromkeys(r.family for r in self.results))

    def rows(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys((r.area, r.contract) for r in self.results))

    def cell(self, cells, family: str, area: str, contract: str) -> list[str]:
        """One outcome per implementation, in --impl order ('' where it did not run)."""
        return [cells.get((impl, family, area, contract), "") for impl in self.impl_names()]

    def legend(self) -> str:
        counts = "  ".join(f"{GLYPH[k]} {k}: {v}" for k, v in self.counts().items() if v)
        return (
            f"cells: {counts}. One mark per implementation in each cell ({', '.join(self.impl_names())}): the worst "
            f"outcome over the contract's shape cases, which pytest counts one by one ({len(self.results)} here)"
        )

    def missing(self) -> int:
        """Selected contracts without a verdict (0 where the selection is not known)."""
        return max(0, (self.selected or 0) - len({r.nodeid for r in self.results}))

    def incomplete(self) -> str:
        """Why the report does not hold every verdict of the run, or ''."""
        if self.status == "crashed":
            return f"INCOMPLETE: {self.ended}; the contracts it had not run have no verdict"
        if self.status != "finished":
            return INCOMPLETE[self.status]
        if self.missing():
            return f"INCOMPLETE: {self.missing()} of the {self.selected} contracts selected have no verdict"
        return ""

    def header_lines(self) -> list[str]:
        lines = [f"seed {self.seed}; python {platform.python_version()} on {platform.platform()}"]
        if self.incomplete():
            lines.append(self.incomplete())
        for info in self.impls.values():
            if info.error:
                lines.append(f"{info.name} ({info.target}): {info.error}")
                continue
            unusable = "; ".join(f"{family}: {reason}" for family, reason in info.unusable.items())
            if info.backend == "?" and not info.dtypes:
                built = "no model was built" if self.status != "running" else "no model built yet"
                lines.append(f"{info.name} ({info.target}): {unusable or built}")
                continue
            dtypes = ", ".join(f"{fam} {dt}" for fam, dt in info.dtypes.items())
            lines.append(
                f"{info.name} ({info.target}): backend {info.backend} {info.framework_version}, "
                f"device {info.device}; {dtypes}" + (f"; {unusable}" if unusable else "")
            )
        lines += [f"crashed: {crash}" for crash in self.crashes]
        return lines + ([self.findings_problem] if self.findings_problem else [])

    # Terminal
    def render_terminal(self, width: int, color: bool) -> str:
        cells = self.cells()
        table = Table(title="Conformance matrix: contract x family", title_justify="left", pad_edge=False)
        table.add_column("area", style="dim", no_wrap=True)
        table.add_column("contract", no_wrap=True, min_width=max((len(c) for _, c in self.rows()), default=8))
        for family in self.families():
            table.add_column(family, justify="center")
        previous_area = None
        for area, contract in self.rows():
            row = [area if area != previous_area else "", contract]
            previous_area = area
            for family in self.families():
                row.append("".join(f"[{STYLE[o]}]{GLYPH[o]}[/]" if o else " " for o in self.cell(cells, family, area, contract)))
            table.add_row(*row)
        buf = io.StringIO()
        console = Console(file=buf, width=width, force_terminal=color, no_color=not color, highlight=False)
        found = self.findings()
        if found:  # the causes first: one each, with the contracts they explain
            console.print(f"FINDINGS: {findings.summary(found)}", style="bold", markup=False)
            for number, finding in enumerate(found, 1):
                for line in findings.lines(finding, number):
                    console.print(line, markup=False, soft_wrap=True)
        for line in self.header_lines():
            console.print(line, markup=False, soft_wrap=True)
        if not self.results:  # nothing ran: the header says why, an empty matrix would say nothing
            console.print("no contract ran", markup=False)
            return buf.getvalue()
        console.print(table)
        console.print(self.legend(), markup=False)
        if self.logits:
            header, rows = self.render_differences()
            diffs = Table(title=DIFFERENCES_TITLE, title_justify="left", pad_edge=False)
            for i, name in enumerate(header):
                diffs.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
            for row in rows:
                diffs.add_row(*row)
            console.print(diffs)
        return buf.getvalue()

    def findings(self) -> list[findings.Finding]:
        try:
            return findings.collect(self.results, self.impls)
        except Exception as exc:  # a bug of ours: the verdicts and the report still come out
            self.findings_problem = f"findings could not be drawn up ({type(exc).__name__}: {exc}): please report it"
            return []

    # Files
    def as_dict(self) -> dict:
        cells = self.cells()
        found = self.findings()
        follows = findings.follows_from(found)
        return {
            "suite": "seq2seq-conformance",
            "seed": self.seed,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "argv": sys.argv,
            "status": self.status,
            "duration_s": round(time.time() - self.started, 3),
            "implementations": [dataclasses.asdict(i) for i in self.impls.values()],
            "crashed": self.crashes,
            "summary": self.counts(),
            "findings": [findings.as_dict(f) for f in found],
            "matrix": [
                {"impl": i, "family": f, "area": a, "contract": c, "outcome": o} for (i, f, a, c), o in cells.items()
            ],
            "results": [{**dataclasses.asdict(r), "follows_from": follows.get(r.nodeid, "")} for r in self.results],
            "differences": [
                {"pair": [a, b], "family": family, "max_relative_difference": error, "dtypes": dtypes}
                for (a, b), by_family in self.differences().items() for family, (error, dtypes) in by_family.items()
            ],
        }

    def render_markdown(self) -> str:
        cells = self.cells()
        families = self.families()
        lines = ["# Conformance report", ""]
        found = self.findings()
        if found:
            lines += ["## Findings", "", findings.summary(found), ""]
            lines += [findings.markdown(finding, number) for number, finding in enumerate(found, 1)]
            lines += [""]
        lines += [f"- {markdown(line)}" for line in self.header_lines()]
        lines += ["", "| area | contract | " + " | ".join(families) + " |", "|---|---|" + "---|" * len(families)]
        for area, contract in self.rows():
            marks = ["".join(GLYPH.get(o, " ") for o in self.cell(cells, f, area, contract)) for f in families]
            lines.append(f"| {area} | {contract} | " + " | ".join(marks) + " |")
        lines += ["", markdown(self.legend()), ""]
        if self.logits:
            header, rows = self.render_differences()
            lines += [f"## {DIFFERENCES_TITLE}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
            lines += ["| " + " | ".join(map(markdown, row)) + " |" for row in rows]
            lines.append("")
        failures = [r for r in self.results if r.outcome in FAULTS]
        follows = findings.follows_from(found)
        if failures:
            lines += ["## Failures", ""]
            lines += [f"- {code_span(r.nodeid)}: {markdown(r.message)}" + (f" (follows from: {markdown(follows[r.nodeid])})"
                                                                              if r.nodeid in follows else "")
                      for r in failures]
        return "\n".join(lines) + "\n"

    def write(self, path: str) -> list[pathlib.Path]:
        """PATH.json, PATH.md and PATH.html (see `report_paths`). Each file is replaced whole, from a
        temporary file of a name no other writer uses; OSError (a full disk) leaves no temporary behind."""
        from .html_report import render_html  # jinja2 loads only when a report is written

        paths = report_paths(path)
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        texts = (json.dumps(self.as_dict(), indent=1), self.render_markdown(), render_html(self))
        for target, text in zip(paths, texts):
            replace_whole(target, text)
        self.written = time.time()
        return paths


SUFFIXES = (".json", ".md", ".html")


def report_stem(path) -> pathlib.Path:
    """PATH without a .json, .md or .html suffix; any other dot is the user's name (conformance.torch)."""
    stem = pathlib.Path(path)
    return stem.with_suffix("") if stem.suffix in SUFFIXES else stem


def report_paths(path) -> list[pathlib.Path]:
    """PATH.json, PATH.md, PATH.html."""
    stem = report_stem(path)
    return [stem.with_name(stem.name + suffix) for suffix in SUFFIXES]


def replace_whole(target: pathlib.Path, text: str) -> None:
    """`target` holds `text` or what it held before, never a part: a run killed mid-write, or two
    runs writing at once, leave a whole file (mode as the umask says, like any other file)."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    try:
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def check_writable(path) -> None:
    """OSError unless the report's folder can be created and a file written in it."""
    folder = report_stem(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".{report_stem(path).name}.{os.getpid()}.{secrets.token_hex(4)}.probe"
    probe.write_bytes(b"")
    probe.unlink()


class ReportInUse(Exception):
    """Another run holds the lock of a report path."""


class ReportLock:
    """One run writes a report path at a time: the first takes PATH's lock (fcntl.flock, released by
    the kernel when its process ends, however it ends), and a second run with the same path is
    refused instead of overwriting a report still in progress. The lock file holds the owner's pid."""

    def __init__(self, path, owner: int | None = None):
        self.path = report_stem(path).with_name(f".{report_stem(path).name}.lock")
        self.owner = owner or os.getpid()  # the pid the user knows the run by
        self.file = None

    def acquire(self) -> None:
        if fcntl is None:  # Windows: no flock; two runs on one path are then the user's to avoid
            return
        while self.file is None:
            file = open(self.path, "a+", encoding="utf-8")
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                owner = file.read().strip() or "?"
                file.close()
                raise ReportInUse(owner) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(file.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its owner removed it between our open and our lock: lock the file there now
                file.close()
                continue
            file.truncate(0)
            file.write(f"pid {self.owner} on {platform.node()}")
            file.flush()
            self.file = file

    def release(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.file.close()
            self.file = None
