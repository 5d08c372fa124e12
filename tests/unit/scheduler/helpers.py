"""Building cluster states for scheduler tests, through the real state machine."""

from __future__ import annotations

import itertools
from typing import Any

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import Node, Resources
from consensus.nodes import RegisterNode, SetNodeStatus, UpdateNode
from consensus.services import parse_service_spec
from consensus.state import ClusterState, Result
from consensus.tasks import (
    CreateService,
    ReportTaskStatus,
    Task,
    TaskReport,
    UpdateService,
    services,
    tasks,
)
from scheduler.rounds import schedule
from scheduler.view import StateView

GiB = 1 << 30


def make_node(i: int, cpu: int = 4000, memory: int = 4 * GiB, **fields: Any) -> Node:
    return Node(
        id=f"n{i}",
        name=f"node{i}",
        address=f"127.0.0.{i + 1}",
        api_port=7420,
        raft_port=7421,
        gossip_port=7422,
        resources=Resources(cpu, memory),
        **fields,
    )


class Cluster:
    """A ClusterState driven by commands, with scheduling rounds applied to it directly."""

    def __init__(self, n_nodes: int = 0, **node_fields: Any) -> None:
        self.state = ClusterState()
        self.now = 1000.0
        self._ids = (f"t{i:05d}" for i in itertools.count())
        for i in range(n_nodes):
            self.add_node(make_node(i, **node_fields))

    def ok(self, cmd: Any) -> Result:
        result = self.state.apply(cmd)
        assert result.ok, result.error
        return result

    def add_node(self, node: Node) -> None:
        self.ok(RegisterNode(node))

    def create(self, **plain: Any) -> None:
        spec = parse_service_spec({"image": "busybox", **plain})
        self.ok(CreateService(f"svc-{spec.name}", spec, self.now))

    def update(self, name: str, **changes: Any) -> None:
        from consensus.services import merge_spec

        self.ok(UpdateService(merge_spec(services(self.state)[name].spec, changes), self.now))

    def node_status(self, node_id: str, status: str) -> None:
        self.ok(SetNodeStatus(node_id, status, self.now))

    def availability(self, node_id: str, availability: str) -> None:
        self.ok(UpdateNode(node_id, availability=availability))

    def round(self, seed: int = 0) -> Result:
        rnd = schedule(StateView.capture(self.state), self.now, seed, lambda: next(self._ids))
        self.wake_at = rnd.wake_at
        result = self.state.apply(rnd.command) if rnd.command else Result(True, value=None)
        for cmd in (*rnd.rollouts, *rnd.jobs):
            followup = self.state.apply(cmd)
            result = result if result.value is not None else followup
        return result

    def settle(self, max_rounds: int = 10) -> int:
        """Run rounds until one changes nothing; returns how many changed something."""
        for n in range(max_rounds):
            if self.round().value is None:
                return n
        raise AssertionError(f"no quiescence after {max_rounds} rounds")

    def report(self, task: Task, state: str, **fields: Any) -> Result:
        return self.ok(
            ReportTaskStatus(task.node_id, self.now, (TaskReport(task.id, state, **fields),))
        )

    def live(self, service: str | None = None) -> list[Task]:
        """Tasks told to run, by slot."""
        return sorted(
            (
                t
                for t in tasks(self.state).values()
                if t.desired == "running" and (service is None or t.service == service)
            ),
            key=lambda t: (t.slot, t.node_id),
        )
