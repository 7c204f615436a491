"""The HTML report, rendered by a real browser: one self-contained page with the header, the matrix,
every failure with what was measured and the bound, and every skip with its reason."""
import html
import importlib.util
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
    """The three reference backends beside d2l's Gluon GRU (examples/), which fails padding and
    declines every family but gru."""
    impls = [name for name, framework in (("torch", "torch"), ("tensorflow", "tensorflow"), ("mxnet", "mxnet"),
                                          ("examples.gluon_d2l_gru:make_model", "mxnet")) if importlib.util.find_spec(framework)]
    run_conformance(pytester, ",".join(impls), "--family=transformer,gru", "-k", "stepwise or extra_padding or logits_match")
    page = pytester.path / "report.html"
    source = page.read_text()
    assert "<script" not in source and "http://" not in source and "https://" not in source, "self-contained"
    text = page_text(page)
    assert "Conformance report" in text and "seed 0" in text
    assert "torch 2." in text and "transformer: float64" in text, "implementations with backend and precision"
    assert "Matrix: contract × family" in text
    if len(impls) == 4:
        assert "tensorflow 2." in text and "mxnet 1.9.1" in text
        assert "stepwise_equals_teacher_forced ✓ ✓ ✓ s ✓ ✓ ✓ ✓" in text and "extra_padding_changes_nothing ✓ ✓ ✓ s ✓ ✓ ✓ ✗" in text
        assert "Failures (4)" in text, "the example's four padding cases"
        # d2l's GRU reads padding into its final state, which has no time axis to cut at a length.
        assert re.search(r"\[extra_padding_changes_nothing\] encoder output \S+ of example \d, a leaf with no time axis \(a final "
                         r"state\), compared whole \(with 3 extra padding columns\): max relative error \S+ > tolerance 1e-10 "
                         r"\(float64\)", text), text
        assert "reproduce: pytest" in text
        assert "logits_match_reference ✓ ✓ ✓ s ✓ ✓ ✓ s" in text, "the book's model loads no canonical weights"
        assert "Skipped (2)" in text and "the book's 10.7 model is a GRU" in text
        assert "does not declare that it loads canonical weights" in text
        assert re.search(r"Cross-framework differences .* pair (gru transformer|transformer gru) torch vs tensorflow \d\.\de-1\d \d\.\de-1\d", text), text
        assert "tensorflow vs numpy" in text and "mxnet vs numpy" in text
