"""pytest -n: every contract of one model (implementation x family) in one worker process.

xdist's default (`--dist load`) spreads a model's contracts over every worker, so each worker imports,
builds, measures and (TensorFlow) traces every model: on the three reference backends that was 1.7x
the CPU of a serial run. Sent whole, a model is built in one worker only. Other tests are each a scope
of their own, as under `--dist load`.
"""
from __future__ import annotations

from typing import Callable

from xdist.scheduler import LoadScopeScheduling


class ByModel(LoadScopeScheduling):
    """xdist's load-scope scheduling with the model a contract runs on as its scope."""

    def __init__(self, config, log, model_of: Callable[[str], str | None]):
        super().__init__(config, log)
        self.model_of = model_of  # node id -> "impl-family", or None for a test that is not a contract

    def _split_scope(self, nodeid: str) -> str:
        return self.model_of(nodeid) or nodeid
