"""Whether a task fits a node: the one rule the scheduler plans with and `apply` re-checks
with at commit (Nomad shares one `AllocsFit` the same way), so a plan the scheduler makes
is a plan `apply` accepts, and a placement `apply` rejects is one the scheduler never makes.

A `NodeRoom` is what one node has left once the tasks that hold resources on it are
counted; the checks are swarmkit-style filters: `set_task` says whether a check applies to
a task (a task reserving no memory is never short of it), `check` whether a node passes,
`explain(n)` what failing on n nodes means and `refusal(node)` what failing on one means.
`TaskFit` runs them cheapest first; the scheduler's `Pipeline` adds explanations over many
nodes, `apply` asks `problem` of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from consensus.model import Node
from consensus.services import Constraint, ServiceSpec

if TYPE_CHECKING:  # tasks.py runs these checks in `apply`, so it imports this module
    from consensus.tasks import Task


class NodeRoom:
    """What one node has left, updated in place as tasks are added to it."""

    __slots__ = ("node", "free_cpu", "free_memory", "host_ports")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.free_cpu = node.resources.cpu_millis
        self.free_memory = node.resources.memory_bytes
        self.host_ports: set[tuple[int, str]] = set()

    def add(self, task: Task) -> None:
        self.free_cpu -= task.reserved.cpu_millis
        self.free_memory -= task.reserved.memory_bytes
        if task.host_ports:  # most tasks publish none: skip building an empty generator
            self.host_ports.update((p.published, p.protocol) for p in task.host_ports)


def rooms_of(
    nodes: Mapping[str, Node], tasks: Iterable[Task], node_ids: Iterable[str]
) -> dict[str, NodeRoom]:
    """The room left on each node of `node_ids` that exists, given the tasks that hold
    resources on it."""
    rooms = {node_id: NodeRoom(nodes[node_id]) for node_id in node_ids if node_id in nodes}
    for task in tasks:
        room = rooms.get(task.node_id)
        if room is not None and task.holds_resources:
            room.add(task)
    return rooms


def _nodes(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"


class Filter(Protocol):
    # Static filters read only what placing tasks cannot change (node state, labels), so a
    # scheduling round computes their verdicts once per constraint set, not once per batch.
    static: bool

    def set_task(self, task: Task, spec: ServiceSpec) -> bool: ...

    def check(self, room: NodeRoom) -> bool: ...

    def explain(self, nodes: int) -> str: ...

    def refusal(self, node: Node) -> str: ...


class ReadyFilter:
    static = True

    def set_task(self, task: Task, spec: ServiceSpec) -> bool:
        return True

    def check(self, room: NodeRoom) -> bool:
        return room.node.status == "ready"

    def explain(self, nodes: int) -> str:
        return f"node down on {_nodes(nodes)}"

    def refusal(self, node: Node) -> str:
        return f"node {node.name} is {node.status}"


class ActiveFilter:
    static = True

    def set_task(self, task: Task, spec: ServiceSpec) -> bool:
        return True

    def check(self, room: NodeRoom) -> bool:
        return room.node.availability == "active"

    def explain(self, nodes: int) -> str:
        return f"node paused or drained on {_nodes(nodes)}"

    def refusal(self, node: Node) -> str:
        return f"node {node.name} is {node.availability}"


class ConstraintFilter:
    static = True

    def __init__(self, constraint: Constraint) -> None:
        self.constraint = constraint

    def set_task(self, task: Task, spec: ServiceSpec) -> bool:
        return True

    def check(self, room: NodeRoom) -> bool:
        return self.constraint.matches(room.node)

    def explain(self, nodes: int) -> str:
        return f"constraint {self.constraint} unmet on {_nodes(nodes)}"

    def refusal(self, node: Node) -> str:
        return f"constraint {self.constraint} unmet on node {node.name}"


class CpuFilter:
    static = False

    def __init__(self) -> None:
        self.need = 0

    def set_task(self, task: Task, spec: ServiceSpec) -> bool:
        self.need = task.reserved.cpu_millis
        return self.need > 0

    def check(self, room: NodeRoom) -> bool:
        return room.free_cpu >= self.need

    def explain(self, nodes: int) -> str:
        return f"insufficient cpu on {_nodes(nodes)}"

    def refusal(self, node: Node) -> str:
        return f"insufficient cpu on node {node.name}"


class MemoryFilter:
    static = False

    def __init__(self) -> None:
        self.need = 0

    def set_task(self, task: Task, spec: ServiceSpec) -> bool:
        self.need = task.reserved.memory_bytes
        return self.need > 0

    def check(self, room: NodeRoom) -> bool:
        return room.free_memory >= self.need

    def explain(self, nodes: int) -> str:
        return f"insufficient memory on {_nodes(nodes)}"

    def refusal(self, node: Node) -> str:
        return f"insufficient memory on node {node.name}"


class HostPortFilter:
    static = False

    def __init__(self) -> None:
        self.ports: list[tuple[int, str]] = []

    def set_task(self, task: Task, spec: ServiceSpec) -> bool:
        self.ports = [(p.published, p.protocol) for p in task.host_ports]
        return bool(self.ports)

    def check(self, room: NodeRoom) -> bool:
        return room.host_ports.isdisjoint(self.ports)

    def _ports(self) -> str:
        return ", ".join(f"{port}/{proto}" for port, proto in self.ports)

    def explain(self, nodes: int) -> str:
        return f"host port {self._ports()} in use on {_nodes(nodes)}"

    def refusal(self, node: Node) -> str:
        return f"host port {self._ports()} in use on node {node.name}"


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


class TaskFit:
    """The filters that apply to one task (and to every task identical to it)."""

    def __init__(self, task: Task, spec: ServiceSpec) -> None:
        self.filters = [f for f in filters_for(spec) if f.set_task(task, spec)]
        self._checks = [f.check for f in self.filters]

    # A plain loop, not all(): this runs once per task and node on the placement path, where
    # a generator costs twice the time.
    def passes(self, room: NodeRoom) -> bool:
        for check in self._checks:  # noqa: SIM110
            if not check(room):
                return False
        return True

    def problem(self, room: NodeRoom) -> str:
        """Why the task does not fit the node of `room`, or "" when it does."""
        for f in self.filters:
            if not f.check(room):
                return f.refusal(room.node)
        return ""
