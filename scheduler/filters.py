"""Feasibility filters, swarmkit style: `set_task` says whether a filter applies to a task,
`check` whether a node passes, `explain(n)` what failing on n nodes means. The pipeline runs
them cheapest first and counts, per filter, the nodes that stopped at it, so a pending task
can say why: `insufficient memory on 3 nodes; constraint node.labels.zone==a unmet on 2 nodes`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from consensus.services import Constraint, ServiceSpec
from consensus.tasks import Task
from scheduler.nodeinfo import NodeInfo


def _nodes(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"


class Filter(Protocol):
    # Static filters read only what a round cannot change (node state, labels), so their
    # verdicts are computed once per round and constraint set, not once per batch.
    static: bool

    def set_task(self, task: Task, spec: ServiceSpec) -> bool: ...

    def check(self, info: NodeInfo) -> bool: ...

    def explain(self, nodes: int) -> str: ...


class ReadyFilter:
    static = True

    def set_task(self, task: Task, spec: ServiceSpec) -> bool:
        return True

    def check(self, info: NodeInfo) -> bool:
        return info.node.status == "ready"

    def explain(self, nodes: int) -> str:
        return f"node down on {_nodes(nodes)}"


class ActiveFilter:
    static = True

    def set_task(self, task: Task, spec: ServiceSpec) -> bool:
        return True

    def check(self, info: NodeInfo) -> bool:
        return info.node.availability == "active"

    def explain(self, nodes: int) -> str:
        return f"node paused or drained on {_nodes(nodes)}"


class ConstraintFilter:
    static = True

    def __init__(self, constraint: Constraint) -> None:
        self.constraint = constraint

    def set_task(self, task: Task, spec: ServiceSpec) -> bool:
        return True

    def check(self, info: NodeInfo) -> bool:
        return self.constraint.matches(info.node)

    def explain(self, nodes: int) -> str:
        return f"constraint {self.constraint} unmet on {_nodes(nodes)}"


class CpuFilter:
    static = False

    def __init__(self) -> None:
        self.need = 0

    def set_task(self, task: Task, spec: ServiceSpec) -> bool:
        self.need = task.reserved.cpu_millis
        return self.need > 0

    def check(self, info: NodeInfo) -> bool:
        return info.free_cpu >= self.need

    def explain(self, nodes: int) -> str:
        return f"insufficient cpu on {_nodes(nodes)}"


class MemoryFilter:
    static = False

    def __init__(self) -> None:
        self.need = 0

    def set_task(self, task: Task, spec: ServiceSpec) -> bool:
        self.need = task.reserved.memory_bytes
        return self.need > 0

    def check(self, info: NodeInfo) -> bool:
        return info.free_memory >= self.need

    def explain(self, nodes: int) -> str:
        return f"insufficient memory on {_nodes(nodes)}"


class HostPortFilter:
    static = False

    def __init__(self) -> None:
        self.ports: list[tuple[int, str]] = []

    def set_task(self, task: Task, spec: ServiceSpec) -> bool:
        self.ports = [(p.published, p.protocol) for p in task.host_ports]
        return bool(self.ports)

    def check(self, info: NodeInfo) -> bool:
        return info.host_ports.isdisjoint(self.ports)

    def explain(self, nodes: int) -> str:
        ports = ", ".join(f"{port}/{proto}" for port, proto in self.ports)
        return f"host port {ports} in use on {_nodes(nodes)}"


def filters_for(spec: ServiceSpec) -> list[Filter]:
    """All filters, the ones that never change during a round (state, labels) first."""
    return [
        ReadyFilter(),
        ActiveFilter(),
        *(ConstraintFilter(c) for c in spec.constraints),
        CpuFilter(),
        MemoryFilter(),
        HostPortFilter(),
    ]


class Pipeline:
    """The filters that apply to one task (and every task identical to it)."""

    def __init__(self, task: Task, spec: ServiceSpec) -> None:
        self.filters = [f for f in filters_for(spec) if f.set_task(task, spec)]
        self._checks = [f.check for f in self.filters]
        self._dynamic = [f.check for f in self.filters if not f.static]

    # Plain loops, not all(): these run once per task and node on the placement path, where
    # a generator costs twice the time.
    def passes(self, info: NodeInfo) -> bool:
        for check in self._checks:  # noqa: SIM110
            if not check(info):
                return False
        return True

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
