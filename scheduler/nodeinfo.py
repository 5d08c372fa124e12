"""The scheduler's per-node view: what each node has left, updated in place as tasks land
(swarmkit's nodeinfo.go), so placing 100k tasks never recounts a node from scratch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from consensus.model import Node
from consensus.tasks import Task


class NodeInfo:
    __slots__ = (
        "node",
        "free_cpu",
        "free_memory",
        "task_count",
        "by_service",
        "host_ports",
        "load",
    )

    def __init__(self, node: Node) -> None:
        self.node = node
        self.free_cpu = node.resources.cpu_millis
        self.free_memory = node.resources.memory_bytes
        self.task_count = 0
        self.by_service: defaultdict[str, int] = defaultdict(int)  # live tasks per service id
        self.host_ports: set[tuple[int, str]] = set()
        # The larger of the reserved CPU and memory fractions (0 where capacity is unknown);
        # kept up to date by `add`, since scoring reads it for every node of every batch.
        self.load = 0.0

    def add(self, task: Task) -> None:
        self.count(task)
        self.refresh_load()

    def count(self, task: Task) -> None:
        """`add` without the load, for adding many tasks before one `refresh_load`."""
        self.free_cpu -= task.reserved.cpu_millis
        self.free_memory -= task.reserved.memory_bytes
        self.task_count += 1
        self.by_service[task.service_id] += 1
        if task.host_ports:  # most tasks publish none
            self.host_ports.update((p.published, p.protocol) for p in task.host_ports)

    def refresh_load(self) -> None:
        res = self.node.resources
        cpu = 1 - self.free_cpu / res.cpu_millis if res.cpu_millis else 0.0
        memory = 1 - self.free_memory / res.memory_bytes if res.memory_bytes else 0.0
        self.load = max(cpu, memory)


def node_infos(nodes: Mapping[str, Node], tasks: Iterable[Task]) -> dict[str, NodeInfo]:
    """Every node with the tasks that hold resources on it, by node id (sorted)."""
    infos = {node_id: NodeInfo(nodes[node_id]) for node_id in sorted(nodes)}
    for task in tasks:
        info = infos.get(task.node_id)
        if info is not None and task.holds_resources:
            info.count(task)
    for info in infos.values():
        info.refresh_load()
    return infos
