"""The scheduler's filter pipeline over `consensus.fit`'s checks (the ones `apply` re-checks
with). It runs them cheapest first and counts, per filter, the nodes that stopped at it, so
a pending task can say why: `insufficient memory on 3 nodes; constraint node.labels.zone==a
unmet on 2 nodes`.
"""

from __future__ import annotations

from collections.abc import Iterable

from consensus.fit import TaskFit
from consensus.services import ServiceSpec
from consensus.tasks import Task
from scheduler.nodeinfo import NodeInfo


class Pipeline(TaskFit):
    """The filters that apply to one task (and every task identical to it)."""

    def __init__(self, task: Task, spec: ServiceSpec) -> None:
        super().__init__(task, spec)
        self._dynamic = [f.check for f in self.filters if not f.static]

    def passes_dynamic(self, info: NodeInfo) -> bool:
        """The filters that placing tasks can change: for nodes known to pass the static ones."""
        for check in self._dynamic:  # noqa: SIM110
            if not check(info):
                return False
        return True

    def passes_static(self, info: NodeInfo) -> bool:
        return all(f.check(info) for f in self.filters if f.static)

    def explain(self, infos: Iterable[NodeInfo]) -> str:
        """Why no node in `infos` can take the task: the nodes stopped by each filter."""
        failures = [0] * len(self.filters)
        seen = 0
        for info in infos:
            seen += 1
            for i, check in enumerate(self._checks):
                if not check(info):
                    failures[i] += 1
                    break
        if seen == 0:
            return "no nodes in the cluster"
        parts = [f.explain(n) for f, n in zip(self.filters, failures, strict=True) if n]
        return "; ".join(parts) if parts else "no suitable node"
