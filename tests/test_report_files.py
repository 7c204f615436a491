"""The report's files: named as the user named them, checked before the run, whole after any write
(a full disk, two runs on one path), and a run that cannot write them says so once and goes on."""
import json
import multiprocessing
import os
import re
import resource
import shutil
import signal
import subprocess
import sys

import markdown_it  # rich's Markdown parser: reads the report as GitHub would
import pytest

from conformance.report import Report, ReportInUse, ReportLock, report_paths
from tests.conformance_run import run_conformance
from tests.test_plugin_errors import usage_error


def test_a_dot_in_the_report_name_is_kept(pytester):
    """CI jobs naming their reports conformance.torch and conformance.tensorflow must not overwrite
    each other's conformance.json: only a .json, .md or .html suffix is the stem's."""
    run = run_conformance(pytester, "torch", "--family=gru", "-k", "eval_calls", "--conformance-report=out/conformance.torch")
    assert run.outcome.ret == 0
    assert sorted(p.name for p in (pytester.path / "out").iterdir()) == [
        "conformance.torch.html", "conformance.torch.json", "conformance.torch.md"]
    assert [p.name for p in report_paths("out/conformance.torch.md")] == [
        "conformance.torch.json", "conformance.torch.md", "conformance.torch.html"]


def unwritable(folder):
    """`folder`, made so that this process cannot create files in it, or skip: permissions for a
    user, the immutable attribute for root (who ignores permissions)."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
    elif shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("root, and no immutable attribute on this file system: no folder root cannot write")
    return folder


def test_a_report_folder_that_cannot_be_written_is_a_usage_error(pytester):
    folder = unwritable(pytester.path / "read-only")
    try:
        line = usage_error(pytester, "--impl=torch", f"--conformance-report={folder}/report")
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True) if os.geteuid() == 0 else folder.chmod(0o700)
    assert line.startswith(f"ERROR: --conformance-report={folder}/report: cannot write in {folder}: ")
    assert line.endswith(("Permission denied", "Operation not permitted")), line


def can_mount_in_a_namespace() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"], capture_output=True).returncode == 0


def test_a_disk_that_fills_up_mid_run_costs_the_report_not_the_verdicts(pytester, tmp_path):
    """The disk fills up after the first write (a 16 KB file system of the run's own, in a user and
    mount namespace; where that cannot be made, a 16 KB file size limit gives EFBIG instead). The
    contracts all run, the problem is said once mid-run and once at the end, no temporary file is
    left, and the run is red: CI must not pass without the report it asked for."""
    folder = tmp_path / "reports"
    folder.mkdir()
    pytest_args = [sys.executable, "-m", "pytest", "--pyargs", "conformance", "--impl=torch", "--family=gru",
                   f"--conformance-report={folder}/conformance", "-p", "no:cacheprovider", "-q"]
    if can_mount_in_a_namespace():
        script = f'mount -t tmpfs -o size=16k tmpfs {folder} && "$@"; code=$?; echo; ls -A {folder}; exit $code'
        command, limit, problem = ["unshare", "-rm", "sh", "-c", script, "sh", *pytest_args], None, "No space left on device"
    else:
        command, limit, problem = pytest_args, file_size_limit(16 * 1024), "File too large"
    run = subprocess.run(command, cwd=pytester.path, capture_output=True, text=True, timeout=600, preexec_fn=limit)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-3000:]
    warnings = [line for line in output.splitlines() if line.startswith("WARNING: cannot write the conformance report")]
    assert warnings == [f"WARNING: cannot write the conformance report {folder}/conformance: {problem}; the run goes on"], output[-3000:]
    assert f"ERROR: cannot write the conformance report {folder}/conformance: {problem}: no report was written" in output
    assert re.search(r"^\d+ passed(, \d+ skipped)? in ", output, re.M), "every contract has its verdict, none failed"
    assert "INTERNALERROR" not in output and "Traceback" not in output
    left = output.rsplit("\n\n", 1)[-1].split() if limit is None else [p.name for p in folder.iterdir()]
    assert not [name for name in left if "partial" in name], left


def file_size_limit(size: int):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


def write_many(path, times: int) -> list[str]:
    problems = []
    for _ in range(times):
        try:
            Report(0).write(path)
        except OSError as exc:
            problems.append(repr(exc))
    return problems


def test_two_writers_of_one_report_never_fail_nor_leave_a_part(tmp_path):
    """Each write goes through a temporary file of its own name: two processes writing one path
    200 times each (7 of 600 failed with one fixed temporary name) see no error and leave whole files."""
    path = tmp_path / "conformance"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        problems = pool.starmap(write_many, [(path, 200), (path, 200)])
    assert problems == [[], []]
    assert json.loads(path.with_suffix(".json").read_text())["status"] == "running"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conformance.html", "conformance.json", "conformance.md"]


def test_a_report_path_is_locked_by_one_run_at_a_time(tmp_path):
    first, second = ReportLock(tmp_path / "conformance"), ReportLock(tmp_path / "conformance.json")
    first.acquire()
    with pytest.raises(ReportInUse, match=f"^pid {os.getpid()} on "):
        second.acquire()
    first.release()
    second.acquire()  # free again, and the lock file of the first is gone
    second.release()
    assert list(tmp_path.iterdir()) == []


def test_text_from_a_model_is_shown_as_text_in_every_format(pytester):
    """A model's exception message and Unsupported reason, 100 KB each, carrying an <img> tag, a
    Markdown table row and heading, and terminal controls (clear screen, an OSC-8 link, a bell,
    backspaces): one readable line each, in the terminal (where only the suite's own colours remain)
    and in the JSON, Markdown and HTML reports."""
    hostile = "tests.broken.faulty:declines_with_hostile_text,tests.broken.faulty:raises_hostile_text"
    run = run_conformance(pytester, hostile, "--family=gru,transformer", "-k", "eval_calls_agree or stepwise", "-rs", "--color=yes")
    assert run.outcome.ret == 1
    sequences = set(re.findall(r"\x1b[^a-zA-Z]*[a-zA-Z]?|[\x07\x08\x9b]", run.output))
    assert sequences and all(re.fullmatch(r"\x1b\[[0-9;]*m", s) for s in sequences), sequences - {s for s in sequences if s.endswith("m")}
    messages = [r["message"] for r in run.report["results"] if r["outcome"] in ("failed", "skipped")]
    assert len(messages) == 10 and all("<img src=x onerror=alert(1)> | a | b | # Heading click passed x" in m for m in messages)
    assert all(len(m) < 600 and m.endswith(" more characters)") for m in messages), max(map(len, messages))
    assert len((pytester.path / "report.json").read_text()) < 40_000, "the JSON report holds no 100 KB reason"
    html = (pytester.path / "report.html").read_text()
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    markdown = (pytester.path / "report.md").read_text()
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(markdown)
    assert not [t for t in tokens if t.type.startswith("html")], "raw HTML in the Markdown report"
    inline = [child for t in tokens if t.children for child in t.children]
    assert not [t for t in inline if t.type in ("html_inline", "image", "link_open")], "markup in the Markdown report"
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["Conformance report", "Findings", "Failures"]
    assert [t.type for t in tokens].count("table_open") == 1 and [t.type for t in tokens].count("tr_open") == 3
    failures = [line for line in markdown.splitlines() if line.startswith("- `")]
    assert len(failures) == 2 and all("<img src=x onerror=alert(1)> | a | b | # Heading" in rendered(line) for line in failures)


def rendered(markdown: str) -> str:
    """The text a Markdown renderer shows for `markdown`."""
    tokens = markdown_it.MarkdownIt("commonmark").parseInline(markdown)
    return "".join(child.content for t in tokens for child in t.children or [])
