"""MXNet runs its operators on the threads the suite asks for, whatever OMP_NUM_THREADS says: it fixes
them when it loads, so conformance/compat.py loads it under that count."""
import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conformance_run import REPO

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mxnet") is None, reason="mxnet is not installed")

# Loads MXNet as the suite does after limit_threads(n), runs elementwise operators (OpenMP-parallel
# in MXNet), and prints how many of the process's threads did a fifth or more of the busiest one's
# work meanwhile.
BUSY_THREADS = """
import os, sys
from conformance import bridges
from conformance.compat import import_mxnet

bridges.limit_threads(int(sys.argv[1]))
mx = import_mxnet()
list(bridges.loaded_bridges())
x = mx.np.random.uniform(size=(64, 4096))

def cpu_ticks():
    ticks = {}
    for task in os.listdir("/proc/self/task"):
        fields = open(f"/proc/self/task/{task}/stat").read().rpartition(")")[2].split()
        ticks[task] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks

before = cpu_ticks()
for _ in range(400):
    mx.npx.softmax(mx.np.exp(x) * 2 + 1).wait_to_read()
spent = [t - before.get(task, 0) for task, t in cpu_ticks().items()]
print(sum(t >= max(spent) / 5 for t in spent))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2 or not os.path.isdir("/proc/self/task"), reason="needs 2 cores and Linux's /proc")
def test_operators_run_on_one_thread_under_omp_num_threads_2():
    run = subprocess.run([sys.executable, "-c", BUSY_THREADS, "1"], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="2"), timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-1] == "1", f"threads busy running MXNet operators after limit_threads(1): {run.stdout.split()[-1]}, expected 1"


def test_a_limit_asked_after_mxnet_loaded_says_what_it_keeps():
    late = "from conformance import bridges\nfrom conformance.compat import import_mxnet\nimport_mxnet()\nbridges.limit_threads(1)"
    run = subprocess.run([sys.executable, "-c", late], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="2"), timeout=120)
    assert "RuntimeWarning: MXNet loaded before its threads could be limited to 1: its operators keep the thread count " \
           "it read from the environment then (2)" in run.stderr, run.stderr[-3000:]
