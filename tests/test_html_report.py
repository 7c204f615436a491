"""The HTML report, rendered by a real browser: one self-contained page with the header, the matrix,
every failure with what was measured and the bound, and every skip with its reason."""
import html
import re
import shutil
import subprocess

import pytest

from tests.conformance_run import run_conformance

CHROMIUM = shutil.which("chromium")


def page_text(path) -> str:
    """The page's text as headless Chromium renders it (tags dropped, whitespace collapsed)."""
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_report_renders_header_matrix_failures_and_skips(pytester):
    impls = "torch,tests.broken.torch_models:transformer_top_left_mask,tests.broken.torch_models:declines_transformer"
    run_conformance(pytester, impls, "--family=transformer,gru", "-k", "stepwise")
    page = pytester.path / "report.html"
    source = page.read_text()
    assert "<script" not in source and "http://" not in source and "https://" not in source, "self-contained"
    text = page_text(page)
    assert "Conformance report" in text and "seed 0" in text
    assert "torch 2." in text and "transformer: float64" in text, "implementations with backend and precision"
    assert "Matrix: contract × family" in text and "stepwise_equals_teacher_forced ✓ ✗ s ✓ ✓ ✓" in text
    assert "Failures (2)" in text
    assert re.search(r"\[stepwise_equals_teacher_forced\] one token per call vs one pass: max relative error \S+ "
                     r"> tolerance 1e-10 \(float64\); worst at batch=\d, step=\d, token=\d+", text), text
    assert "reproduce: pytest" in text
    assert "Skipped (1)" in text and "declined transformer/float64: this port has no Transformer yet" in text
