"""The conformance report as one self-contained HTML page: inline CSS, no script, nothing fetched."""
from __future__ import annotations

import collections
import datetime
import importlib.metadata
import os
import platform
import time

import jinja2

from . import findings as findings_module
from .report import DIFFERENCES_TITLE, FAILING, GLYPH, Report


def suite_version() -> str:
    try:
        return importlib.metadata.version("seq2seq-conformance")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def render_html(report: Report) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("conformance", "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    found = report.findings()
    follows = findings_module.follows_from(found)
    failures, anchors = [], {}
    for r in report.results:
        if r.outcome in FAILING or r.outcome == "not run":
            anchor = f"failure-{len(failures) + 1}"
            anchors.setdefault((r.impl, r.family, r.area, r.contract), anchor)
            failures.append({**vars(r), "anchor": anchor, "follows_from": follows.get(r.nodeid, "")})
    cells = report.cells()
    rows = [
        {
            "area": area,
            "contract": contract,
            "cells": [
                [
                    {"impl": impl, "outcome": outcome, "anchor": anchors.get((impl, family, area, contract))}
                    for impl, outcome in zip(report.impl_names(), report.cell(cells, family, area, contract))
                ]
                for family in report.families()
            ],
        }
        for area, contract in report.rows()
    ]
    skipped = collections.Counter(
        (r.impl, r.family, r.message.removeprefix("Skipped: ")) for r in report.results if r.outcome == "skipped"
    )
    header, difference_rows = report.render_differences() if report.logits else ([], [])
    return env.get_template("report.html.j2").render(
        suite_version=suite_version(),
        seed=report.seed,
        python=platform.python_version(),
        platform=platform.platform(),
        machine=f"{platform.machine()}, {os.cpu_count()} cores",
        generated=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        duration=time.time() - report.started,
        implementations=list(report.impls.values()),
        impl_names=report.impl_names(),
        families=report.families(),
        rows=rows,
        summary=report.counts(),
        glyphs=GLYPH,
        failures=failures,
        findings=[{**findings_module.as_dict(f), "failed": findings_module.contract_list(f.contracts(following=False)),
                   "following": findings_module.contract_list(f.contracts(following=True))} for f in found],
        findings_summary=findings_module.summary(found),
        differences={"header": header, "rows": difference_rows} if difference_rows else None,
        differences_title=DIFFERENCES_TITLE,
        incomplete=report.incomplete(),
        skips=[{"impl": i, "family": f, "reason": reason, "count": n} for (i, f, reason), n in skipped.items()],
    )
