"""Decode-throughput benchmarks: an asv suite (bench_*.py) and a pytest-benchmark side-by-side run
(test_throughput.py). Importing the package pins every framework's threads (workload.py)."""
from . import workload  # noqa: F401  (before any framework is imported)
