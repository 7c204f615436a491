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

    def __init__(self, config, log, selected: Callable[[], dict[str, dict]]):
        super().__init__(config, log)
        self.selected = selected  # node id -> what the contract is about, as the workers collected it (faults.py)
        self.contracts: dict[str, dict] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self.contracts is None:  # read once the workers have collected
            self.contracts = self.selected()
        entry = self.contracts.get(nodeid)
        return f"{entry['impl']}-{entry['family']}" if entry and entry.get("impl") else nodeid

    def _reschedule(self, node) -> None:
        # A worker that replaces a crashed one gets work once it has collected: xdist 3.8's load-scope
        # scheduling hands it work before, when a second replacement finishes collecting first (KeyError).
        if node in self.registered_collections:
            super()._reschedule(node)

    def remove_node(self, node) -> str | None:
        """xdist 3.8's, except that the test a worker crashed in is not queued again with the rest of its
        scope (it would run a second time); as under `--dist load`, it is reported once, as the crash."""
        workload = self.assigned_work.pop(node)
        pending = [nodeid for work_unit in workload.values() for nodeid, done in work_unit.items() if not done]
        if not pending:
            return None
        crashitem = pending[0]
        for work_unit in workload.values():
            if crashitem in work_unit:
                work_unit[crashitem] = True
        self.workqueue.update({scope: unit for scope, unit in workload.items() if not all(unit.values())})
        for other in self.assigned_work:
            self._reschedule(other)
        return crashitem
