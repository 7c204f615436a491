"""Faults never lose the report: a model that hangs or crashes its process costs its own rows and
about one timeout, the reference beside it keeps every verdict, and pytest -n changes no verdict."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conformance import loading
from tests.conformance_run import run_conformance
from tests.test_plugin_errors import usage_error

FAULTY = "tests.broken.faulty"


def faulty_verdicts(run, impl):
    """{family: sorted outcomes} of one implementation's results."""
    out = {}
    for r in run.report["results"]:
        if r["impl"] == impl:
            out.setdefault(r["family"], []).append(r["outcome"])
    return {family: sorted(outcomes) for family, outcomes in out.items()}


def assert_reference_intact(run):
    torch = run.verdicts("torch")
    assert len(torch) > 40 and set(torch.values()) == {"passed"}, {k: v for k, v in torch.items() if v != "passed"}


def test_model_that_hangs_before_any_contract_costs_one_timeout_per_family(pytester):
    started = time.monotonic()
    run = run_conformance(pytester, f"{FAULTY}:hangs_in_decoder,torch", "--family=gru,lstm", "--conformance-timeout=5")
    elapsed = time.monotonic() - started
    assert run.outcome.ret == 1
    assert_reference_intact(run)
    verdicts = faulty_verdicts(run, f"{FAULTY}:hangs_in_decoder")
    for family in ("gru", "lstm"):
        assert verdicts[family] == ["hung"] + ["not run"] * (len(verdicts[family]) - 1), verdicts[family]
    not_run = [r["message"] for r in run.report["results"] if r["outcome"] == "not run"]
    assert all("hung in stepwise_equals_teacher_forced" in m for m in not_run), not_run[:3]
    # One 5 s wait per family. A wait per contract would cost 5 s times the contracts: a third of that
    # leaves room for a loaded machine (75 s measured under pytest -n 2 at load 4) and still tells them apart.
    waits = 5 * sum(len(outcomes) for outcomes in verdicts.values())
    assert elapsed < waits / 3, f"{elapsed:.0f}s, a wait per contract being {waits}s"


def test_model_that_hangs_inside_a_contract_fails_it_and_the_later_ones_are_not_run(pytester):
    impl = f"{FAULTY}:hangs_on_batch_of_one"  # passes the smoke test, hangs on any batch of one
    started = time.monotonic()
    run = run_conformance(pytester, f"{impl},torch", "--family=gru", "--conformance-timeout=5")
    elapsed = time.monotonic() - started
    assert run.outcome.ret == 1
    assert_reference_intact(run)
    hung = {nodeid: o for nodeid, o in run.verdicts(impl).items() if o == "hung"}
    assert list(hung) == [f"test_autoregressive.py::test_stepwise_equals_teacher_forced[{impl}-gru-B1-S1-T1]"]
    assert set(faulty_verdicts(run, impl)["gru"]) == {"hung", "not run"}
    run.outcome.stdout.fnmatch_lines(["*[[]stepwise_equals_teacher_forced[]] did not finish within 5s (--conformance-timeout)"])
    waits = 5 * len(faulty_verdicts(run, impl)["gru"])  # as above: far less than a wait per contract
    assert elapsed < waits / 3, f"{elapsed:.0f}s, a wait per contract being {waits}s"


def test_hypothesis_contract_that_hangs_is_one_line_within_the_timeout(pytester):
    run = run_conformance(pytester, f"{FAULTY}:hangs_on_batch_of_one", "--family=gru", "--conformance-timeout=4",
                          "-k", "logits_shape")
    assert run.outcome.ret == 1
    assert [r["outcome"] for r in run.report["results"]] == ["hung"]
    assert run.report["results"][0]["message"] == "[logits_shape] did not finish within 4s (--conformance-timeout)"
    assert run.report["results"][0]["duration"] < 4 + 2, "Hypothesis did not retry the hanging example"
    assert "Traceback" not in run.output and "Hypothesis" not in run.output


def test_model_built_in_another_dtype_inside_a_contract_is_still_timed(pytester):
    """test_logits_dtype_follows_spec builds a float32 model inside the contract; building it must not
    cancel the contract's timer, or the decode that hangs after it waits for ever."""
    run = run_conformance(pytester, f"{FAULTY}:hangs_in_float32", "--family=gru", "--conformance-timeout=4",
                          "-k", "logits_dtype_follows_spec")
    assert run.outcome.ret == 1
    assert {r["nodeid"].rsplit("-", 1)[-1]: r["outcome"] for r in run.report["results"]} == {
        "float32]": "hung", "float64]": "not run"}
    assert run.outcome.duration < 4 + 30


class Expired(Exception):
    pass


def test_deadline_inside_an_earlier_one_leaves_it_in_charge():
    started = time.monotonic()
    with pytest.raises(Expired):
        with loading.deadline(1, Expired):
            with loading.deadline(10):
                pass  # on leaving, the enclosing deadline is re-armed, not cancelled
            time.sleep(5)
    assert time.monotonic() - started < 3


def test_model_that_crashes_its_worker_under_xdist(pytester, repo_on_pythonpath):
    impl = f"{FAULTY}:segfaults_in_decoder"  # os.kill(os.getpid(), SIGSEGV) in decoder.forward
    run = run_conformance(pytester, f"{impl},torch", "--family=gru,lstm", workers=2)
    assert run.outcome.ret == 1
    assert_reference_intact(run)
    outcomes = [o for family in faulty_verdicts(run, impl).values() for o in family]
    assert set(outcomes) == {"crashed", "not run"} and len(outcomes) == len(run.verdicts("torch")), "every contract reported"
    assert 1 <= outcomes.count("crashed") <= 2, "a crash at most per worker running it at that moment"
    crashed = [r for r in run.report["results"] if r["outcome"] == "crashed"]
    assert all("Segmentation fault in forward (faulty.py:" in r["message"] for r in crashed), crashed
    assert run.report["crashed"] == [f"{r['nodeid']}: {r['message'].split(': ', 1)[1]}" for r in crashed]
    assert run.outcome.duration < 120


ENDINGS = [  # (factory, how the process running it ended, as the report says)
    ("exits_0_in_decoder", "exited with status 0 before it finished (os._exit(0)?)"),
    ("exits_1_in_decoder", "exited with status 1 before it finished"),
    ("sigkills_in_decoder", "killed by SIGKILL (as the kernel's out-of-memory killer does)"),
    ("segfaults_in_decoder", "Segmentation fault in forward (faulty.py:"),
]


@pytest.mark.parametrize("factory, cause", ENDINGS[:3], ids=[f for f, _ in ENDINGS[:3]])  # a segfault: tests above
def test_model_that_ends_its_worker_is_named_with_how_it_ended(pytester, repo_on_pythonpath, factory, cause):
    impl = f"{FAULTY}:{factory}"
    run = run_conformance(pytester, f"{impl},torch", "--family=gru", "-k", "stepwise or eval_calls", workers=2)
    assert run.outcome.ret == 1
    assert set(run.verdicts("torch").values()) == {"passed"} and len(run.verdicts("torch")) == 8
    outcomes = faulty_verdicts(run, impl)["gru"]  # it works on batches of two or more (the other worker may run one)
    assert len(outcomes) == 8 and set(outcomes) - {"passed"} == {"crashed", "not run"} and outcomes.count("crashed") <= 2, outcomes
    crashed = [r["message"] for r in run.report["results"] if r["outcome"] == "crashed"]
    assert all(cause in message for message in crashed), crashed


def test_crash_under_xdist_is_attributed_by_structure_whatever_the_impl_name(pytester, repo_on_pythonpath):
    """pytest escapes non-ASCII in node ids, and an --impl may hold '-', '[', ']' and '::': a crash is
    matched to its contract through what the workers collected, never by parsing the node id. Before,
    `--impl=mödül:sëgv,torch` crashed ten workers and left a report that said everything passed."""
    crashing, working = "tests.broken.mödül:sëgv-[x]::y", "tests.broken.mödül:wörks-[x]::y"
    run = run_conformance(pytester, f"{crashing},{working},torch", "--family=gru", "-k", "stepwise or eval_calls or logits_shape",
                          workers=2)
    assert run.outcome.ret == 1
    assert run.report["status"] == "finished" and len(run.report["results"]) == 3 * 9, "a verdict for every contract"
    assert set(run.verdicts(working).values()) == set(run.verdicts("torch").values()) == {"passed"}
    outcomes = faulty_verdicts(run, crashing)["gru"]
    assert set(outcomes) - {"passed"} == {"crashed", "not run"} and outcomes.count("crashed") <= 2, outcomes
    assert {m["impl"] for m in run.report["matrix"]} == {crashing, working, "torch"}
    assert f"test_autoregressive.py::test_stepwise_equals_teacher_forced[tests.broken.m\\xf6d\\xfcl:s\\xebgv-[x]::y-gru-B1-S1-T1]" \
        in run.verdicts(crashing), "pytest's escaped node id, attributed to the name as given"


def test_model_that_hangs_under_xdist_costs_one_timeout_per_worker(pytester, repo_on_pythonpath):
    """Workers share what hung: after the first hang in each worker, the model's contracts are not run."""
    impl = f"{FAULTY}:hangs_in_decoder"
    run = run_conformance(pytester, f"{impl},torch", "--family=gru", "--conformance-timeout=5", workers=2)
    assert run.outcome.ret == 1
    assert_reference_intact(run)
    outcomes = faulty_verdicts(run, impl)["gru"]
    assert set(outcomes) == {"hung", "not run"} and 1 <= outcomes.count("hung") <= 2, outcomes
    assert len(outcomes) == len(run.verdicts("torch")), "every contract reported"
    assert run.outcome.duration < 2 * 5 + 60


def test_xdist_gives_the_serial_verdicts_in_one_report(pytester, repo_on_pythonpath):
    serial = run_conformance(pytester, "torch")
    parallel = run_conformance(pytester, "torch", workers=2)
    assert parallel.outcome.ret == serial.outcome.ret == 0
    assert len(serial.verdicts()) == 510
    assert parallel.verdicts() == serial.verdicts()
    assert sorted(map(str, parallel.report["matrix"])) == sorted(map(str, serial.report["matrix"]))
    assert parallel.report["implementations"] == serial.report["implementations"]


def test_report_survives_an_outer_timeout(pytester, repo_on_pythonpath):
    """SIGTERM (what `timeout` sends) in the middle of a run: the results so far are in the report."""
    report = pytester.path / "report.json"
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance", f"--impl=torch,{FAULTY}:hangs_on_batch_of_one",
         "--family=gru", "--conformance-timeout=600", f"--conformance-report={report.with_suffix('')}", "-p", "no:cacheprovider", "-q"],
        cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not results_in(report) and time.monotonic() < deadline:  # written as results arrive
            time.sleep(0.2)
        assert results_in(report), "no results in the report while the run was going"
        # A second run on the same report path is refused while this one writes it (the last writer
        # would otherwise silently win over a run in progress).
        line = usage_error(pytester, "--impl=torch", f"--conformance-report={report.with_suffix('')}")
        assert line.startswith(f"ERROR: --conformance-report={report.with_suffix('')}: another run (pid {run.pid} on "), line
        time.sleep(3)  # into the hang: torch's B1 contract runs first, the faulty one's hangs
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 2, "pytest's 'interrupted': the session finished and wrote the report"
    finally:
        run.kill()
    results = json.loads(report.read_text())["results"]
    assert {r["outcome"] for r in results if r["impl"] == "torch"} == {"passed"}
    assert os.path.exists(report.with_suffix(".md"))


def results_in(report) -> list:
    try:
        return json.loads(report.read_text())["results"]
    except (OSError, ValueError):  # not written yet
        return []


def test_serial_run_killed_by_a_crash_leaves_a_report_saying_so(pytester, repo_on_pythonpath):
    """Without -n a segfault ends the process (and pytest with it): the report it leaves says it is
    incomplete and how to isolate crashes, instead of passing for a whole one."""
    report = pytester.path / "report"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance", f"--impl=torch,{FAULTY}:segfaults_in_decoder",
         "--family=gru", f"--conformance-report={report}", "-p", "no:cacheprovider", "-q"],
        cwd=pytester.path, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == -signal.SIGSEGV, run.stdout[-2000:] + run.stderr[-2000:]
    assert json.loads(report.with_suffix(".json").read_text())["status"] == "running"
    for suffix in (".md", ".html"):
        assert "INCOMPLETE" in report.with_suffix(suffix).read_text() and "pytest -n 1" in report.with_suffix(suffix).read_text()


def test_unloadable_impl_under_xdist_is_named_in_the_report(pytester, repo_on_pythonpath):
    """The controller imports no factory: the reason an --impl cannot load comes from a worker."""
    run = run_conformance(pytester, "torch,nosuch", "--family=gru", "-k", "eval_calls", workers=2)
    assert run.outcome.ret == 1
    errors = {i["name"]: i["error"] for i in run.report["implementations"]}
    assert errors["torch"] == "" and errors["nosuch"].startswith("unknown implementation 'nosuch'")
