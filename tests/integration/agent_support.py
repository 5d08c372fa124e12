"""Running an agent against the real state machine without Raft: a StateSource applies
commands to a ClusterState directly, as each replica does, and wakes the agent."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import Node, Resources
from consensus.nodes import RegisterNode
from consensus.services import parse_service_spec
from consensus.state import ClusterState, Result
from consensus.store import StateVersion, next_version, version_of
from consensus.tasks import (
    Assignment,
    AssignTasks,
    CreateService,
    ReportTaskStatus,
    Task,
    services,
    tasks,
)
from node.agent import Agent

# Long enough for a slow CI machine, short enough to end a hung test.
WAIT = 60.0
# The node the agent under test runs as.
NODE = "n1"


class StateSource:
    """The node's side of the agent's seams: `read`, `changed` and `submit`."""

    def __init__(self, node_id: str, address: str = "127.0.0.1") -> None:
        self.state = ClusterState()
        self.changed = asyncio.Event()
        self.commands: list = []
        self._applied = asyncio.Condition()
        self.state.apply(
            RegisterNode(
                Node(
                    node_id,
                    node_id,
                    address,
                    7420,
                    7421,
                    7422,
                    resources=Resources(64_000, 64 << 30),
                )
            )
        )
        self.version = version_of(self.state)
        self.node_id = node_id

    def read(self) -> StateVersion:
        """The current version of the state, published after each command as a node does."""
        return self.version

    async def submit(self, cmd) -> Result:
        result = self.state.apply(cmd)
        self.version = next_version(self.version, self.state)
        self.commands.append(cmd)
        self.changed.set()
        async with self._applied:
            self._applied.notify_all()
        return result

    async def until(self, predicate: Callable[[StateSource], bool], timeout: float = WAIT) -> None:
        """Wait until a committed change makes `predicate` true."""
        async with self._applied:
            await asyncio.wait_for(self._applied.wait_for(lambda: predicate(self)), timeout)

    def task(self, task_id: str) -> Task:
        return tasks(self.state)[task_id]

    def reports(self) -> list[ReportTaskStatus]:
        return [c for c in self.commands if isinstance(c, ReportTaskStatus)]

    async def create_service(self, plain: dict) -> None:
        result = await self.submit(CreateService(uuid.uuid4().hex, parse_service_spec(plain), 1.0))
        assert result.ok, result.error

    async def assign(self, service: str, *slots: int) -> list[str]:
        """New tasks of `service` in `slots`, assigned to this node, as the scheduler would."""
        svc = services(self.state)[service]
        created = tuple(
            Task(
                f"{service}-{slot}-{uuid.uuid4().hex[:8]}",
                svc.id,
                service,
                slot,
                svc.version,
                reserved=svc.spec.resources.reservations,
                host_ports=svc.spec.host_ports,
            )
            for slot in slots
        )
        result = await self.submit(
            AssignTasks(
                2.0, create=created, assign=tuple(Assignment(t.id, self.node_id) for t in created)
            )
        )
        assert result.value["assigned"] == len(created), result.value
        return [t.id for t in created]


@contextlib.asynccontextmanager
async def run_agent(agent: Agent) -> AsyncIterator[Agent]:
    """The agent runs for the block, then is cancelled as the node would; a crash fails."""
    runner = asyncio.ensure_future(agent.run())
    try:
        yield agent
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def eventually(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """For what no committed change announces (a runner finishing its removal)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)
