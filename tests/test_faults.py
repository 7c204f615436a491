"""Faults never lose the report: a model that hangs or crashes its process costs its own rows and
about one timeout, the reference beside it keeps every verdict, and pytest -n changes no verdict."""
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conformance import loading
from conformance.inputs import Batch
from tests.conformance_run import not_applicable, run_conformance
from tests.test_plugin_errors import usage_error

FAULTY = "tests.broken.faulty"


def faulty_verdicts(run, impl):
    """{family: sorted outcomes} of one implementation's results."""
    out = {}
    for r in run.report["results"]:
        if r["impl"] == impl:
            out.setdefault(r["family"], []).append(r["outcome"])
    return {family: sorted(outcomes) for family, outcomes in out.items()}


def not_intact(results) -> list[str]:
    """The torch reference's results that neither passed nor skipped as not applying to the family's source."""
    return [r["nodeid"] for r in results if r["impl"] == "torch" and r["outcome"] != "passed"
            and not (r["outcome"] == "skipped" and r["contract"] in not_applicable(r["family"]))]


def assert_reference_intact(run):
    assert len(run.verdicts("torch")) > 40 and not not_intact(run.report["results"]), not_intact(run.report["results"])


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


@pytest.mark.timeout(60)  # without the fix, the second call hangs
def test_a_contract_past_its_deadline_calls_the_model_no_more():
    """A deadline's SIGALRM fires once. Under load, Hypothesis once caught a contract's Hung and ran
    the hanging model again with no timer left: the run waited for ever. Once the deadline has fired,
    every call into the model raises it again at once, until the contract ends."""
    from conformance.faults import Hung
    from conformance.spec import ModelSpec

    model = loading.build(loading.resolve(f"{FAULTY}:hangs_on_batch_of_one"), ModelSpec("gru"))
    batch = Batch(np.array([[1, 2]]), np.array([2]), np.array([[3]]))
    caught = []
    started = time.monotonic()
    with pytest.raises(Hung):
        with loading.deadline(1, Hung):
            for _ in range(3):  # as a caller that catches what the model raised and tries again
                try:
                    model.teacher_forced(batch)
                except Hung as exc:
                    caught.append(exc)
            raise caught[-1]
    assert len(caught) == 3 and time.monotonic() - started < 5
    assert model.teacher_forced(Batch(np.array([[1, 2]] * 2), np.array([2, 2]), np.array([[3]] * 2))).shape[:2] == (2, 1), \
        "past the deadline's end the model is called again"


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


ENDINGS = {  # factory: how the process running it ended, as the report says
    "exits_0_in_decoder": "exited with status 0 before it finished (os._exit(0)?)",
    "exits_1_in_decoder": "exited with status 1 before it finished",
    "sigkills_in_decoder": "killed by SIGKILL (as the kernel's out-of-memory killer does)",
    "segfaults_in_decoder": "Segmentation fault in forward (faulty.py:",
}


def assert_each_ending_named(run, endings, per_impl: int):
    """Each model of `endings` has one crashed contract naming how its process ended, the others not
    run (or passed: they decode batches of two and more, and may have run before the crash)."""
    for factory, cause in endings.items():
        impl = f"{FAULTY}:{factory}"
        outcomes = faulty_verdicts(run, impl)["gru"]
        assert len(outcomes) == per_impl and set(outcomes) - {"passed"} == {"crashed", "not run"}, (impl, outcomes)
        crashed = [r["message"] for r in run.report["results"] if r["impl"] == impl and r["outcome"] == "crashed"]
        assert crashed and all(cause in message for message in crashed), crashed


def test_models_that_end_or_block_their_worker_are_named_with_how(pytester, repo_on_pythonpath):
    """os._exit(0), os._exit(1) and SIGKILL in a worker (a segfault: the test above), and a mutex
    locked twice in native code, which the watchdog ends as a hang: one run under pytest -n 2."""
    endings = {f: c for f, c in ENDINGS.items() if f != "segfaults_in_decoder"}
    impls = ",".join(f"{FAULTY}:{factory}" for factory in [*endings, "deadlocks_in_c"])
    run = run_conformance(pytester, f"{impls},torch", "--family=gru", "-k", "stepwise or eval_calls_agree", "--conformance-timeout=3",
                          workers=2)
    assert run.outcome.ret == 1
    assert set(run.verdicts("torch").values()) == {"passed"} and len(run.verdicts("torch")) == 8
    assert_each_ending_named(run, endings, per_impl=8)
    assert all(outcomes.count("crashed") <= 2 for outcomes in (faulty_verdicts(run, f"{FAULTY}:{f}")["gru"] for f in endings))
    stuck = faulty_verdicts(run, f"{FAULTY}:deadlocks_in_c")["gru"]
    assert set(stuck) - {"passed"} == {"hung", "not run"} and stuck.count("hung") <= 2, stuck
    assert all(re.search(r"stuck in native code where Python cannot stop it in _lock_twice \(faulty\.py:\d+\)", r["message"])
               for r in run.report["results"] if r["outcome"] == "hung")


def run_serially(pytester, impl: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m pytest --pyargs conformance --impl=IMPL ARGS` from the command line, as a user runs
    it: serial runs started so are supervised (conformance/supervisor.py). Its report: report.json."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance", f"--impl={impl}", "-p", "no:cacheprovider", "-q",
         f"--conformance-report={pytester.path / 'report'}", *args],
        cwd=pytester.path, capture_output=True, text=True, timeout=timeout)


def report_of(pytester) -> dict:
    return json.loads((pytester.path / "report.json").read_text())


def test_models_that_end_the_process_of_a_serial_run_fail_one_contract_each_and_the_run_goes_on(pytester, repo_on_pythonpath):
    """Before: os._exit(0) in a model ended a serial run with exit 0, an empty terminal and a report
    that said "running" with no result; a segfault or SIGKILL ended it with every verdict lost. Now
    the process watching the one that runs the models names the contract and how it ended, in one
    line, and the run goes on in a new process: every contract has a verdict, and the run is red."""
    on_import = "tests.broken.crashes_on_import:make_model"  # a segfault as the module is imported
    impls = ",".join(f"{FAULTY}:{factory}" for factory in ENDINGS)
    run = run_serially(pytester, f"{impls},{on_import},torch", "--family=gru", "-k", "stepwise or eval_calls_agree")
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-3000:]
    report = report_of(pytester)
    assert report["status"] == "finished" and len(report["results"]) == 5 * 8, "a verdict for every contract"
    assert {r["outcome"] for r in report["results"] if r["impl"] == "torch"} == {"passed"}
    assert_each_ending_named(type("Run", (), {"report": report}), ENDINGS, per_impl=8)
    lines = [line for line in output.splitlines() if line.startswith("conformance: ")]
    assert len(lines) == 5, lines
    for factory, cause in ENDINGS.items():
        [line] = [line for line in lines if f"{FAULTY}:{factory}-gru-" in line]
        assert cause in line and line.endswith("the run goes on in a new process"), line
    # pytest's last line counts every contract, the earlier children's verdicts too ("8 passed, 7 skipped" once hid a crash).
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (failed|passed|skipped)", run.stdout.strip().splitlines()[-1])}
    assert counts["failed"] == 4 + 1 and sum(counts.values()) == 5 * 8 + 1, (counts, "and the import crash's item")
    error = "it crashed the process running the models while it was imported (Segmentation fault in <module> (crashes_on_import.py:"
    assert [i["error"] for i in report["implementations"] if i["name"] == on_import][0].startswith(error)
    assert "INTERNALERROR" not in output and "Traceback" not in output


def test_model_stuck_in_native_code_is_ended_by_the_watchdog(pytester, repo_on_pythonpath):
    """A mutex locked twice through ctypes, with the GIL released or held: SIGALRM's handler never
    runs, so --conformance-timeout alone never ended such a contract (the run waited for ever). The
    watchdog ends the process running it a little after the timeout, the contract is reported as
    hung in native code, with the model's frame, and the run goes on."""
    impls = f"{FAULTY}:deadlocks_in_c,{FAULTY}:deadlocks_in_c_holding_the_gil,torch"
    started = time.monotonic()
    run = run_serially(pytester, impls, "--family=gru", "-k", "stepwise", "--conformance-timeout=3")
    elapsed = time.monotonic() - started
    assert run.returncode == 1, (run.stdout + run.stderr)[-3000:]
    report = report_of(pytester)
    assert {r["outcome"] for r in report["results"] if r["impl"] == "torch"} == {"passed"}
    for impl in impls.split(",")[:2]:
        outcomes = faulty_verdicts(type("Run", (), {"report": report}), impl)["gru"]
        assert sorted(set(outcomes)) == ["hung", "not run"] and outcomes.count("hung") == 1, outcomes
        [hung] = [r["message"] for r in report["results"] if r["impl"] == impl and r["outcome"] == "hung"]
        assert re.fullmatch(r"\[stepwise_equals_teacher_forced\] did not finish within 3s \(--conformance-timeout\), stuck in "
                            r"native code where Python cannot stop it in _lock_twice \(faulty\.py:\d+\): the watchdog ended its "
                            r"process 3s later", hung), hung
    assert elapsed < 2 * (3 + 3) + 90, f"{elapsed:.0f}s: each hang costs its timeout and the watchdog's grace, once"


def test_sigterm_ends_a_run_stuck_in_native_code_with_its_report(pytester, repo_on_pythonpath):
    """`timeout 60 pytest ...` sends SIGTERM while a model is stuck in native code (a contract timeout
    of 600 s: the watchdog is far off). Before, the suite's SIGTERM handler never ran and kept the
    process alive (killed by hand at 626 s, the report "running" with no result). Now the run ends
    within seconds, exit 2, its report written: torch's verdicts, the rest not run, and where the
    model was stuck."""
    report = pytester.path / "report.json"
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance", f"--impl=torch,{FAULTY}:deadlocks_in_c", "--family=gru",
         "-k", "stepwise", "--conformance-timeout=600", f"--conformance-report={report.with_suffix('')}", "-p", "no:cacheprovider",
         "-q"], cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not results_in(report) and time.monotonic() < deadline:  # torch's cases run first
            time.sleep(0.2)
        time.sleep(3)  # into the deadlock: torch's other cases take well under a second
        stopped = time.monotonic()
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 2, run.stdout.read()[-3000:]
        assert time.monotonic() - stopped < 30
    finally:
        run.kill()
    parsed = json.loads(report.read_text())
    assert parsed["status"] == "interrupted"
    assert {r["outcome"] for r in parsed["results"] if r["impl"] == "torch"} == {"passed"}
    [not_run] = {r["message"] for r in parsed["results"] if r["outcome"] == "not run"}
    assert re.fullmatch(r"not run: the run was interrupted by SIGTERM in test_autoregressive\.py::test_stepwise_equals_teacher_"
                        r"forced\[\S+-gru-B1-S1-T1\]; the process running the models did not end within 5s \(stuck in "
                        r"_lock_twice \(faulty\.py:\d+\)\) and was ended", not_run), not_run


def test_a_serial_run_killed_outright_takes_its_models_process_with_it(pytester, repo_on_pythonpath):
    """SIGKILL of the pytest process a user started (the one that watches): the process running the
    models is told (SIGTERM), writes what it has, and ends; it does not run on alone."""
    if not pathlib.Path("/proc/self/task").exists():
        pytest.skip("finds the child process through /proc")
    report = pytester.path / "report.json"
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance", f"--impl=torch,{FAULTY}:hangs_on_batch_of_one",
         "--family=gru", "-k", "stepwise", "--conformance-timeout=600", f"--conformance-report={report.with_suffix('')}",
         "-p", "no:cacheprovider", "-q"], cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not results_in(report) and time.monotonic() < deadline:
            time.sleep(0.2)
        [child] = map(int, pathlib.Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split())
        run.kill()
        run.wait(timeout=30)
        deadline = time.monotonic() + 30
        while pathlib.Path(f"/proc/{child}").exists() and pathlib.Path(f"/proc/{child}/stat").read_text().split()[2] != "Z" \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pathlib.Path(f"/proc/{child}").exists() or pathlib.Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
    finally:
        run.kill()
    assert json.loads(report.read_text())["status"] == "interrupted"


def test_crash_under_xdist_is_attributed_by_structure_whatever_the_impl_name(pytester, repo_on_pythonpath):
    """pytest escapes non-ASCII in node ids, and an --impl may hold '-', '[', ']' and '::': a crash is
    matched to its contract through what the workers collected, never by parsing the node id. Before,
    `--impl=mödül:sëgv,torch` crashed ten workers and left a report that said everything passed."""
    crashing, working = "tests.broken.mödül:sëgv-[x]::y", "tests.broken.mödül:wörks-[x]::y"
    run = run_conformance(pytester, f"{crashing},{working},torch", "--family=gru", "-k", "stepwise or eval_calls_agree or logits_shape",
                          workers=2)
    assert run.outcome.ret == 1
    assert run.report["status"] == "finished" and len(run.report["results"]) == 3 * 9, "a verdict for every contract"
    assert set(run.verdicts(working).values()) == set(run.verdicts("torch").values()) == {"passed"}
    outcomes = faulty_verdicts(run, crashing)["gru"]
    assert set(outcomes) - {"passed"} == {"crashed", "not run"} and outcomes.count("crashed") <= 2, outcomes
    assert {m["impl"] for m in run.report["matrix"]} == {crashing, working, "torch"}
    assert "test_autoregressive.py::test_stepwise_equals_teacher_forced[tests.broken.m\\xf6d\\xfcl:s\\xebgv-[x]::y-gru-B1-S1-T1]" \
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
    assert len(serial.verdicts()) == 712  # every contract, shape case and family
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
    assert any(r["impl"] == "torch" for r in results) and not not_intact(results), not_intact(results)
    assert os.path.exists(report.with_suffix(".md"))


def results_in(report) -> list:
    try:
        return json.loads(report.read_text())["results"]
    except (OSError, ValueError):  # not written yet
        return []


@pytest.mark.parametrize("impl, status", [("segfaults_in_decoder", -signal.SIGSEGV), ("deadlocks_in_c", 1)])
def test_unsupervised_serial_run_ended_by_a_model_leaves_a_report_saying_so(pytester, repo_on_pythonpath, impl, status):
    """With --no-conformance-supervisor a model that ends the process (a segfault; the watchdog
    ending a hang in native code, its dump on the terminal) ends the run: the report it leaves says
    it is incomplete and why, instead of passing for a whole one."""
    report = pytester.path / "report"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance", f"--impl=torch,{FAULTY}:{impl}", "--no-conformance-supervisor",
         "--family=gru", "--conformance-timeout=3", f"--conformance-report={report}", "-p", "no:cacheprovider", "-q"],
        cwd=pytester.path, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == status, run.stdout[-2000:] + run.stderr[-2000:]
    assert json.loads(report.with_suffix(".json").read_text())["status"] == "running"
    for suffix in (".md", ".html"):
        text = report.with_suffix(suffix).read_text()
        assert "INCOMPLETE" in text and "--no-conformance-supervisor" in text
    if impl == "deadlocks_in_c":
        assert "Timeout (0:00:06)!" in run.stderr and "in _lock_twice" in run.stderr, run.stderr[-2000:]


def test_unloadable_impl_under_xdist_is_named_in_the_report(pytester, repo_on_pythonpath):
    """The controller imports no factory: the reason an --impl cannot load comes from a worker."""
    run = run_conformance(pytester, "torch,nosuch", "--family=gru", "-k", "eval_calls", workers=2)
    assert run.outcome.ret == 1
    errors = {i["name"]: i["error"] for i in run.report["implementations"]}
    assert errors["torch"] == "" and errors["nosuch"].startswith("unknown implementation 'nosuch'")
