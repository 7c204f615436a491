"""The benchmark harness runs and reports correctly. Nothing here asserts a speed: figures come from
`python -m benchmarks.ratios` and asv (docs/benchmarks.md)."""
import importlib.util
import itertools
import json
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest
from asv.results import Results

from benchmarks import compare, loops, paired, plot, regression_selftest
from benchmarks.backends import Unavailable, peers, subject
from benchmarks.implementations import impl_subject
from benchmarks.workload import BACKENDS  # the asv grid's: torch, tensorflow, mxnet, onnxruntime, each its framework's name
from tests.conformance_run import ported

ROOT = compare.SUITE
# A model of ours that is not a reference: the factory's module offers no greedy_decode.
TIED = "tests.tricky.torch_models:tied_embeddings"


def outside_xdist(**changes) -> dict:
    """This environment without the variables of a pytest -n worker: pytest-benchmark, seeing one
    inherited, believes it runs under xdist and disables itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    return env | changes


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_side_by_side_case_runs_once(backend):
    """`pytest benchmarks/` without --benchmark-only decodes 8 tokens once per case, every backend and
    family, each family on its kind of source (frames, images); a backend with no reference of a
    family yet skips its cases saying so, one that has it decodes (one thread: a smoke run, not figures).
    One backend's cases a run (`-k`), so that pytest -n spreads them."""
    run = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/", "-v", "-rs", "-p", "no:cacheprovider",
                          "-k", f"test_decode and {backend}-"], cwd=ROOT, capture_output=True, text=True,
                         env=outside_xdist(BENCH_THREADS="1"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " failed" not in run.stdout and " error" not in run.stdout
    outcomes = dict(re.findall(r"::test_decode\[(\S+)\] (PASSED|SKIPPED)", run.stdout))
    assert {case.split("-")[0] for case in outcomes} == {backend}, sorted(outcomes)
    have = ported("torch" if backend == "onnxruntime" else backend)  # onnxruntime: the torch references exported
    for family in ("speech", "captioning"):
        for case in (f"{backend}-{family}-{mode}-B{batch}" for mode in ("cached", "recompute") for batch in (1, 32)):
            assert outcomes.get(case) == ("PASSED" if family in have else "SKIPPED"), (case, outcomes.get(case))
        if family not in have:
            assert f"declined {family}/float32: " in run.stdout, f"no reason for {backend} {family}"
    assert all(outcomes.get(f"{backend}-peer-{peer}-B1") in ("PASSED", "SKIPPED") for peer in peers(backend, "speech"))


ASV = str(pathlib.Path(sys.executable).with_name("asv"))  # the installed environment's: the README's .venv/bin/asv


@pytest.fixture
def asv_home(tmp_path) -> pathlib.Path:
    """A scratch HOME with asv's machine file, made as the docs make it (`asv machine --yes`): `asv run`
    refuses to run without one, and the user's own stays untouched."""
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run([ASV, "machine", "--yes"], cwd=ROOT, env=dict(os.environ, HOME=str(home)), capture_output=True, check=True)
    return home


def asv_env(home, **extra):
    """asv's runner strips PYTHONPATH: ASV_PYTHONPATH makes it import modules of this checkout that
    are not installed (the models in tests/), as the README's BENCH_IMPLS command does."""
    return dict(os.environ, HOME=str(home), ASV_PYTHONPATH=str(ROOT), **extra)


def test_ctranslate2_decodes_the_torch_references_tokens_from_its_weights():
    """The CTranslate2 peer is the torch reference's own Transformer, its weights converted
    (peers_torch.ctranslate2_spec): the same greedy tokens, so the two decode the same work."""
    pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed (pip install -e '.[bench]')")
    from benchmarks import peers_torch, workload
    from impls.torch import stepwise_greedy_decode
    from tests.decoding_inputs import assert_same_greedy_tokens, torch_logit_gap

    model = subject("torch", "transformer", "cpu").model
    src, valid = workload.source(3)
    ours = stepwise_greedy_decode(model, src, valid, workload.BOS, 12)
    assert_same_greedy_tokens(peers_torch.ctranslate2_translate(3, 12)(), ours,
                              torch_logit_gap(model, src, valid, workload.BOS), "CTranslate2 vs the torch reference")


def test_keras_hub_whisper_peer_caches_what_its_backbone_computes():
    """The TensorFlow speech peer's cached step (peers_tensorflow.KerasHubWhisper: keras-hub's
    WhisperBackbone and its layers' caches, our loop) gives the logits of the backbone's own uncached
    forward at every position, for varied tokens; its XLA and eager loops agree. ~10 s (building)."""
    pytest.importorskip("keras_hub", reason="keras-hub is not installed (pip install --no-deps keras-hub==0.32.0)")
    import numpy as np
    import tensorflow as tf

    from benchmarks import peers_tensorflow, workload

    model = peers_tensorflow._whisper()
    frames, _ = model.source(2)
    tokens = tf.constant(np.random.default_rng(0).integers(3, workload.VOCAB, (2, 5)), tf.int32)
    memory = model.encode(frames, None)
    self_caches, cross_caches = model.empty_caches(2, 5), model.empty_caches(2, model.memory_len)
    stepped = []
    for index in range(5):
        logits, self_caches, cross_caches = model.step_logits(tokens[:, index], index, memory, self_caches,
                                                              cross_caches, fill_cross=index == 0)
        stepped.append(np.asarray(logits))
    whole = np.asarray(model.logits(frames, tokens))
    np.testing.assert_allclose(np.stack(stepped, 1), whole, rtol=1e-4, atol=1e-4)
    compiled = tf.function(model.decode_graph, jit_compile=True)
    np.testing.assert_array_equal(compiled(frames, None, 4).numpy(), np.asarray(model.decode(frames, None, 4)))


def test_asv_discovers_the_suite():
    run = subprocess.run([sys.executable, "-m", "asv", "check", "--python=same"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


# --- asv as the docs run it, from a fresh clone ----------------------------------------------------

GREEDY = "bench_decode.GreedyDecode.time_greedy_decode"


def greedy_case(backend) -> tuple[str, ...]:
    """GreedyDecode's smallest cpu case of `backend` as asv's results name its parameters (reprs)."""
    return tuple(map(repr, (backend, "gru", 1, "cpu", 32)))


def one_greedy_case_of(*backends) -> str:
    """A --bench regex for those cases: asv matches it against `name(param, ...)`."""
    return re.escape(GREEDY.split(".", 1)[1]) + r"\('(" + "|".join(backends) + r")', 'gru', 1, 'cpu', 32\)"


def asv_in_a_fresh_clone(tmp_path, home, bench, **env):
    """docs/benchmarks.md's commands in a fresh `git clone` of this repository (its HEAD), against the
    installed environment, with neither PYTHONPATH nor ASV_PYTHONPATH unless `env` sets them:
    `asv machine --yes` (asv_home), then `asv run --python=same --quick --set-commit-hash=<HEAD>
    --bench <bench>`. Returns the run and what asv saved, as
    {(benchmark, parameter reprs): seconds, None where it failed, NaN where it skipped or did not run}."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASV_PYTHONPATH")} | {"HOME": str(home)} | env
    run = subprocess.run([ASV, "run", "--python=same", "--quick", "--show-stderr", f"--set-commit-hash={head}",
                          "--bench", bench], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    saved = list((clone / ".asv" / "results").glob(f"*/{head[:8]}-*.json"))
    assert len(saved) == 1, f"asv saved {saved} for {head}: {run.stdout[-3000:]}{run.stderr[-3000:]}"
    results = Results.load(str(saved[0]))
    values = {}
    for key in results.get_all_result_keys():
        params = results.get_result_params(key)
        values |= {(key, combo): value for combo, value in zip(itertools.product(*params), results.get_result_value(key, params))}
    return run, values


def test_asv_times_a_reference_of_every_backend_from_a_fresh_clone(tmp_path, asv_home):
    """asv starts each benchmark process in a temporary directory, PYTHONPATH stripped: the references
    are found as the conformance suite finds them (installed, conformance_impls.<backend>), and each
    backend of the grid records a figure, not n/a."""
    missing = [backend for backend in BACKENDS if importlib.util.find_spec(backend) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (the [all] extra installs every backend)")
    run, values = asv_in_a_fresh_clone(tmp_path, asv_home, one_greedy_case_of(*BACKENDS))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-3000:]
    for backend in BACKENDS:
        seconds = values[GREEDY, greedy_case(backend)]
        assert seconds is not None and math.isfinite(seconds) and seconds > 0, (
            f"asv recorded {seconds} for {backend}, not a time: {run.stdout[-4000:]}")


def test_a_reference_that_cannot_be_imported_fails_the_asv_run(tmp_path, asv_home):
    """A broken framework install (an `mxnet` first on the benchmark process's path that raises
    ImportError) leaves conformance_impls.mxnet unimportable: asv records a failure and exits 2; it
    does not skip the case."""
    broken = tmp_path / "broken" / "mxnet"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("libmxnet.so: cannot open shared object file")\n')
    run, values = asv_in_a_fresh_clone(tmp_path, asv_home, one_greedy_case_of("mxnet"), ASV_PYTHONPATH=str(broken.parent))
    assert run.returncode == 2, run.stdout[-4000:] + run.stderr[-3000:]
    assert values[GREEDY, greedy_case("mxnet")] is None, "asv did not record a failure"
    assert ("ImportError: --impl=mxnet: cannot import 'conformance_impls.mxnet': ImportError: libmxnet.so: "
            "cannot open shared object file") in run.stdout


@pytest.mark.parametrize("backend", ["torch", "tensorflow", "mxnet"])
def test_a_device_the_backend_cannot_see_is_unavailable_not_an_error(backend):
    try:
        subject(backend, "gru", "cuda")
    except Unavailable as exc:
        assert str(exc) == f"{backend} sees no GPU"
    else:
        pytest.skip(f"{backend} sees a GPU here")


@pytest.mark.parametrize("impl, reason", [
    # The factory declines the device itself.
    ("numpy", "declined gru/float32 on cuda:7: the NumPy specification runs on the cpu only, not on cuda:7"),
    # The factory ignores spec.device and builds on the cpu: the bridge, asked to move the model, cannot.
    (TIED, "bridge declined gru/float32 on cuda:7: torch sees "),
], ids=["factory-declines", "bridge-declines"])
def test_a_device_reaches_the_factory_in_its_spec_and_may_be_declined(impl, reason):
    """--impl models on a device: the factory or its bridge declines one it cannot run on, and the
    benchmark is Unavailable (a skip) with that reason. No machine has a cuda:7."""
    pytest.importorskip("torch")
    with pytest.raises(Unavailable, match=re.escape(reason)):
        impl_subject(impl, "gru", "cuda:7")


THREADS_SEEN = """
import sys
from benchmarks import workload
from benchmarks.backends import subject
model = subject(sys.argv[1], "gru", "cpu").model
subject(sys.argv[1], "gru", "cpu").greedy(*workload.source(1), 4)
if sys.argv[1] == "torch":
    import torch
    print(torch.get_num_threads())
elif sys.argv[1] == "onnxruntime":
    options = model.decoder.session.get_session_options()
    print(options.intra_op_num_threads, options.inter_op_num_threads)
else:
    import tensorflow as tf
    print(tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads())
"""


@pytest.mark.parametrize("backend, expected", [("torch", "1"), ("tensorflow", "1 1"), ("onnxruntime", "1 1")])
def test_a_benchmark_process_runs_the_threads_it_asks_for(backend, expected):
    """BENCH_THREADS reaches each framework through its bridge (TensorFlow and ONNX Runtime sessions:
    one inter-op thread too)."""
    pytest.importorskip(backend)
    run = subprocess.run([sys.executable, "-c", THREADS_SEEN, backend], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, BENCH_THREADS="1"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split("\n")[-2] == expected, run.stdout


def test_unknown_backend_is_unavailable():
    with pytest.raises(Unavailable, match="unknown backend"):
        subject("jax", "gru", "cpu")


CASE = paired.Case("mypkg.models:make_model", "gru", 1, "interface", 128)


@pytest.mark.parametrize("status, head, slower", [
    ("compared", [1.15] * 30, True),  # 15% slower in every pair
    ("compared", [1.05] * 30, False),  # slower, but within the factor
    ("compared", [1.3] * 14 + [0.99] * 16, False),  # most pairs are not slower: the median pair is 0.99
    ("compared", [1.2] * 5, False),  # past the factor, but five pairs cannot show it (p = 1/32)
    ("failed at head", [], True),  # as asv's newly failing benchmark
    ("failed at base", [], False),
    ("skipped", [], False),
])
def test_a_case_is_slower_past_the_factor_when_its_pairs_lean_that_way(status, head, slower):
    result = paired.Result(CASE, status, base=[1.0] * len(head), head=head)
    assert result.slower(factor=1.08) is slower


def test_the_sign_test_counts_pairs_above_one():
    assert paired.sign_test([1.1] * 10) == 1 / 1024
    assert paired.sign_test([1.1, 0.9]) == 3 / 4 and paired.sign_test([1.0, 1.0]) == 1.0  # ties say nothing


def run_fixture():
    machine = dict(cpu="Test CPU", cores=2, threads=2, python="3.11", versions={"torch": "2.13.0"})
    cache = [dict(table="cache", backend="torch", family=f, batch=b, steps=128, fast="cached", slow="recompute",
                  target=3.0, ratios=[r], ratio=r, tokens_per_s=dict(cached=1000.0 * r, recompute=1000.0),
                  met=r >= 3.0)
             for f, b, r in (("gru", 1, 20.0), ("gru", 32, 2.5), ("transformer", 1, 14.0))]
    peer = dict(table="peers", backend="torch", family="transformer", batch=1, steps=32, fast="reference",
                slow="hf-bart-loop", target=2.3, ratios=[2.4], ratio=2.4,
                tokens_per_s={"reference": 2400.0, "hf-bart-loop": 1000.0}, met=True)
    lengths = dict(table="lengths", backend="torch", family="gru", batch=1, met=True,
                   seconds_per_token={"32": 1.5e-4, "64": 1.6e-4, "128": None})
    return dict(machine=machine, workload="tiny", repeats={"peers": dict(passes=3, calls=5)},
                rows=[peer, *cache, lengths])


def test_plot_writes_the_readme_table_and_the_png(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run_fixture()))
    assert plot.main([str(path), "--out", str(tmp_path / "throughput")]) == 0
    text = (tmp_path / "throughput.md").read_text()
    assert "Test CPU, 2 cores available, 2 threads per framework" in text
    assert "| torch | gru | 32 | 2,500 | 1,000 | 2.5x |" in text  # tokens/s cached, recompute, ratio
    assert "| torch | 1 | hf-bart-loop | 1,000 | 2,400 | 2.40x |" in text
    assert "| torch | 1 | 2.40x | reference / hf-bart-loop | 2.3x | yes |" in text
    assert "2 of 3 met (**missed: torch gru batch 32**); lowest 2.5x" in text  # a missed target shows
    assert "| torch | gru | 1 | 150.0 | 160.0 | n/a |" in text  # µs per token by length; n/a: below noise
    assert (tmp_path / "throughput.png").read_bytes()[:4] == b"\x89PNG"


def test_the_loops_table_puts_each_implementations_loops_side_by_side():
    """benchmarks.loops: tokens/s = tokens / median, "interface-eager / interface-compiled / native", "–" for
    a loop not offered, and a compiled loop that fell back to eager marked, its reason under the table."""
    def bench(impl, family, batch, loop, median, how=None):
        info = dict(impl=impl, family=family, batch=batch, loop=f"{loop} loop", tokens=batch * 32)
        return dict(extra_info=info | ({"how": how} if how else {}), stats=dict(median=median))
    run = dict(machine_info=dict(cpu_model="Test CPU", workload="tiny", versions={}), benchmarks=[
        bench("torch", "gru", 1, "interface-eager", 0.032), bench("torch", "gru", 1, "native", 0.016),
        bench("torch", "gru", 1, "interface-compiled", 0.020, "torch.compile, per step"),
        bench("mine:make", "gru", 1, "interface", 0.064),  # the old name of interface-eager
        bench("mine:make", "gru", 1, "interface-compiled", 0.064, "eager (not compiled: no graph)"),
        dict(extra_info=dict(backend="torch", mode="cached"), stats=dict(median=1.0)),  # backend-keyed: left out
    ])
    assert loops.table([run]).splitlines() == [
        "Tokens/s, interface-eager / interface-compiled / native:", "",
        "| family | torch B1 | mine:make B1 |", "|---|---:|---:|",
        "| gru | 1,000 / 1,600 / 2,000 | 500 / 500 (a) / – |", "",
        "(a) interface-compiled ran eager (not compiled: no graph)",
    ]


def test_without_a_gpu_every_cuda_combination_skips_before_setup():
    from benchmarks import bench_decode, workload

    if workload.gpu_device_present():
        pytest.skip("this machine has a GPU: each backend's own check decides")
    for cls in (bench_decode.GreedyDecode, bench_decode.CachedVsRecompute, bench_decode.Encode,
                bench_decode.PeakMemory, bench_decode.ImplDecode):
        devices = {combo[3] for combo in cls.skip_params}
        assert devices == {"cuda:0"}, f"{cls.__name__} skips {devices}"
        assert len(cls.skip_params) == len(list(itertools.product(*cls.params))) // 2, cls.__name__


def test_pytest_benchmark_times_any_impl_by_its_name(tmp_path):
    """`pytest benchmarks/ --impl=... --loop=...`: the interface loops of a model from tests/ and, beside
    them, every loop of the torch reference, with figures and what each ran; a loop a model does not
    offer skips saying why."""
    pytest.importorskip("torch")
    out = tmp_path / "run.json"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/", "-p", "no:cacheprovider", "-rs", "--benchmark-only",
         f"--impl={TIED},torch", "--family=gru", "-k", "B1", "--loop=eager,compiled,native", f"--benchmark-json={out}"],
        cwd=ROOT, capture_output=True, text=True, env=outside_xdist(BENCH_ROUNDS="2"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"{TIED} offers no native loop (its factory's module has no greedy_decode)" in run.stdout
    timed = {(b["extra_info"]["impl"], b["extra_info"]["loop"]): b for b in json.loads(out.read_text())["benchmarks"]}
    assert set(timed) == {(impl, f"{loop} loop") for impl in (TIED, "torch") for loop in ("interface-eager", "interface-compiled")
                          } | {("torch", "native loop")}
    assert {key: b["extra_info"]["how"] for key, b in timed.items()} == {
        (TIED, "interface-eager loop"): "eager", ("torch", "interface-eager loop"): "eager", ("torch", "native loop"): "native",
        (TIED, "interface-compiled loop"): "torch.compile, per step", ("torch", "interface-compiled loop"): "torch.compile, per step"}
    for bench in timed.values():
        assert bench["group"] == "gru batch 1" and bench["stats"]["rounds"] == 2 and bench["stats"]["median"] > 0
        assert bench["extra_info"]["tokens"] == 32  # batch 1 x 32 steps


def test_asv_times_any_impl_named_in_bench_impls(asv_home):
    """BENCH_IMPLS names the implementations of ImplDecode: the model from tests/ gets a figure in
    seconds, and its missing native loop is a skip with the reason."""
    pytest.importorskip("torch")
    run = subprocess.run(
        [sys.executable, "-m", "asv", "run", "--python=same", "--quick", "--show-stderr",
         "--bench", r"ImplDecode.*'gru', 1, 'cpu', 32"],
        cwd=ROOT, capture_output=True, text=True, env=asv_env(asv_home, BENCH_IMPLS=TIED))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figure = re.search(re.escape(TIED) + r"\s+gru\s+1\s+cpu\s+32\s+interface-eager\s+([0-9.]+(±[0-9.]+)?(ms|s|us|μs))\s",
                       run.stdout)
    assert figure, run.stdout[-3000:]
    assert f"{TIED} offers no native loop" in run.stdout


def test_the_gate_in_a_users_repository_passes_an_unchanged_commit_and_fails_a_15pc_slower_one(tmp_path):
    """`python -m benchmarks.compare --impl=usermodel:make_model`, run inside a git repository that is not
    ours, times *its* factory (the model from tests/ above) at the base and at each commit through the
    interface loop: a comment-only commit passes, one whose decoder does 15% more work fails. gru at
    batch 1 keeps it to about a minute; the five same-vs-same runs that set the factor are
    regression_selftest's (docs/benchmarks.md)."""
    pytest.importorskip("torch")
    repo = tmp_path / "repo"
    base, unchanged, slowed = regression_selftest.user_repository(repo, TIED, slowdown=0.15)
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # the suite, and the model from tests/ that usermodel.py wraps
    for head, expected in ((unchanged, 0), (slowed, 1)):
        run = subprocess.run(
            [sys.executable, "-m", "benchmarks.compare", "--impl=usermodel:make_model", f"--base={base}",
             f"--head={head}", "--family=gru", "--batch=1", f"--json={tmp_path / 'gate.json'}"],
            cwd=repo, capture_output=True, text=True, env=env)
        assert run.returncode == expected, run.stdout[-4000:] + run.stderr[-3000:]
        assert f"repository {repo}" in run.stdout
        (case,) = json.loads((tmp_path / "gate.json").read_text())["cases"]
        assert case["case"] == "usermodel:make_model gru B1 interface 128" and case["status"] == "compared"
        assert case["slower"] is bool(expected) and len(case["base"]) >= compare.MIN_PAIRS


HANGS_LATER = '''

# --- the decoder hangs from its {after}th call on: during the gate's timed pairs ------------------
import time as _time

from conformance import Declared

_working_make_model = make_model


def make_model(spec):
    made = _working_make_model(spec)
    decoder = (made.model if isinstance(made, Declared) else made).decoder
    forward, calls = decoder.forward, [0]

    def hangs_later(*args, **kwargs):
        calls[0] += 1
        if calls[0] >= {after}:
            _time.sleep(3600)
        return forward(*args, **kwargs)

    decoder.forward = hangs_later
    return made
'''


# --timeout covers a side's start too (import, build): 10 s failed the base side at load 11.
HANG_LIMIT = 30


def test_the_gate_fails_a_commit_whose_model_hangs_and_goes_on(tmp_path):
    """A head whose decoder hangs once timing has begun is killed after --timeout and fails at head
    (exit 1), naming the limit: the gate never waits on it."""
    pytest.importorskip("torch")
    repo = tmp_path / "repo"
    base, *_ = regression_selftest.user_repository(repo, TIED, slowdown=0.15)
    regression_selftest.git("checkout", "--quiet", base, cwd=repo)
    usermodel = repo / "usermodel.py"
    # 8 steps a decode: the warm-up decode and the two untimed pairs make 24 decoder calls.
    usermodel.write_text(usermodel.read_text() + HANGS_LATER.format(after=40))
    hangs = regression_selftest.commit(repo, "the decoder hangs")
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare", "--impl=usermodel:make_model", f"--base={base}", f"--head={hangs}",
         "--family=gru", "--batch=1", "--steps=8", "--pairs=4", f"--timeout={HANG_LIMIT}", f"--json={tmp_path / 'gate.json'}"],
        cwd=repo, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert run.returncode == 1, run.stdout[-4000:] + run.stderr[-3000:]
    (case,) = json.loads((tmp_path / "gate.json").read_text())["cases"]
    assert case["status"] == "failed at head" and case["slower"], case
    assert case["reason"].startswith(f"head: no answer within {HANG_LIMIT} s (--timeout)"), case["reason"]
    assert "FAILED AT HEAD" in run.stdout


def test_the_workload_draws_each_familys_kind_of_source():
    """Token ids with lengths, 10 s of 80-feature frames with lengths, 3x112x112 images without: the same
    arrays for every backend, in the workload's dtype, sized as the spec it builds models on says."""
    from benchmarks import workload as W

    tokens, token_lengths = W.source(2, "gru")
    frames, frame_lengths = W.source(2, "speech")
    images, no_lengths = W.source(2, "captioning")
    assert tokens.shape == (2, W.SRC_LEN) and tokens.dtype == "int64" and token_lengths.tolist() == [W.SRC_LEN] * 2
    assert frames.shape == (2, 1000, W.spec("speech").num_features) == (2, 1000, 80) and frames.dtype == W.DTYPE
    assert frame_lengths.tolist() == [1000, 1000]
    spec = W.spec("captioning")
    assert images.shape == (2, spec.channels, spec.height, spec.width) == (2, 3, 112, 112) and no_lengths is None
    assert (W.source(2, "speech")[0] == frames).all(), "the workload must be the same at every call"


def test_pytest_benchmark_times_frames_and_images_through_both_loops(tmp_path):
    """`pytest benchmarks/ --impl=onnxruntime --family=speech,captioning`: the exported references get the
    workload's frames (with lengths) and images (without), through the interface loop and their native
    loop, with figures."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "run.json"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/", "-p", "no:cacheprovider", "-rs", "--benchmark-only",
         "--impl=onnxruntime", "--family=speech,captioning", "-k", "B1", f"--benchmark-json={out}"],
        cwd=ROOT, capture_output=True, text=True, env=outside_xdist(BENCH_ROUNDS="1", BENCH_THREADS="1"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    timed = {(b["extra_info"]["family"], b["extra_info"]["loop"]): b for b in json.loads(out.read_text())["benchmarks"]}
    assert set(timed) == {(family, f"{loop} loop") for family in ("speech", "captioning")
                          for loop in ("interface-eager", "native")}
    assert all(b["stats"]["median"] > 0 and b["extra_info"]["tokens"] == 32 for b in timed.values())


def test_the_gates_sides_decode_frames_and_images():
    """The gate's paired processes (benchmarks/paired.py) draw the family's own source: the torch speech
    and captioning references each build, warm up and answer timed pairs (the same commit on both sides)."""
    pytest.importorskip("torch")
    env = dict(outside_xdist(), PYTHONPATH=str(ROOT), BENCH_THREADS="1", BENCH_TIMER="process")
    for family in ("speech", "captioning"):
        result = paired.measure(paired.Case("torch", family, 1, "native", 4), {"base": env, "head": env}, ROOT,
                                min_pairs=2, max_pairs=2, seconds=0.0, timeout=120)
        assert result.status == "compared" and len(result.base) == len(result.head) == 2, (family, result.reason)
