"""The runtime-driver seam: what the agent asks of Docker or of plain processes.

Every method is a coroutine and never blocks the event loop. Methods about one task never
raise for a task the driver does not know: they answer a "missing" observation (or nothing
to remove). A task that cannot be started is not an exception either: `start` answers a
"failed" observation whose `error` says why, and `inspect` keeps answering it until
`remove`, so a level-triggered agent sees the failure on every pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from node.runtime.health import CheckKind
from node.runtime.model import NodeFingerprint, RunSpec, TaskObservation, TaskStats


class Driver(Protocol):
    # The runtime's name as nodes report it ("docker", "process").
    name: str
    # Health check kinds the runtime runs itself and reports in `TaskObservation.health`;
    # the agent runs the others with `node.runtime.health.run_health_check`.
    native_health_checks: frozenset[CheckKind]
    # Options for the commands the agent runs for the runtime's tasks (cmd health checks):
    # they run as the task's user, never as the node's.
    command_options: dict

    async def fingerprint(self) -> NodeFingerprint:
        """The capacity this runtime offers to tasks."""

    async def start(self, spec: RunSpec) -> TaskObservation:
        """Create and start the task; idempotent for a task id that already runs."""

    async def inspect(self, task_id: str) -> TaskObservation: ...

    async def wait(self, task_id: str) -> TaskObservation:
        """Return once the task is no longer alive (at once if it is not), with its end."""

    async def stop(self, task_id: str, grace: float) -> TaskObservation:
        """Ask the task to end (SIGTERM), kill it after `grace` seconds; keep its remains."""

    async def remove(self, task_id: str) -> None:
        """Kill the task if it still runs and forget it, its logs and its failure."""

    def logs(
        self, task_id: str, *, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[bytes]:
        """The task's stdout and stderr as byte chunks in the order written; with `follow`,
        keep streaming until the task ends or the iterator is closed."""

    async def stats(self, task_id: str) -> TaskStats | None:
        """Current cpu and memory use; None when the task does not run."""

    async def list_owned(self) -> list[TaskObservation]:
        """Every task this driver runs or ran for this node (alive or not), so a restarted
        agent re-adopts them instead of starting duplicates."""

    async def aclose(self) -> None:
        """Release the driver's own resources; tasks keep running."""
