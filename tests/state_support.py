"""Large states built by the real commands, for tests that show what a commit costs does not
grow with the size of the state."""

from __future__ import annotations

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import Node, Resources
from consensus.nodes import RegisterNode
from consensus.services import parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import Assignment, AssignTasks, CreateService, Task


def spread_state(nodes: int, per_node: int, services: int = 1) -> ClusterState:
    """`nodes` nodes n0.. with `per_node` tasks each (t<node>-<i>), of `services` services
    web0.. taken in turn, all assigned."""
    state = ClusterState()
    for n in range(nodes):
        address = f"10.{n // 250}.{n % 250}.1"
        node = Node(f"n{n}", f"n{n}", address, 1, 2, 3, resources=Resources(10**9, 1 << 50))
        assert state.apply(RegisterNode(node)).ok
    for s in range(services):
        spec = parse_service_spec({"name": f"web{s}", "image": "busybox"})
        assert state.apply(CreateService(f"s{s}", spec, 1.0)).ok
    created, assign = [], []
    for n in range(nodes):
        for i in range(per_node):
            k = n * per_node + i
            created.append(Task(f"t{n}-{i}", f"s{k % services}", f"web{k % services}", k + 1, 1))
            assign.append(Assignment(f"t{n}-{i}", f"n{n}"))
    assert state.apply(AssignTasks(2.0, create=tuple(created), assign=tuple(assign))).ok
    return state
