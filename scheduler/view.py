"""A consistent, read-only picture of the cluster state for one scheduling round.

It shares the tables of one immutable version of the state (consensus.store), which stays
still however many commands Raft applies meanwhile.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from consensus.changes import Change
from consensus.crons import CRONS, Cron
from consensus.model import ClusterInfo, Node
from consensus.nodes import NODES
from consensus.services import ServiceSpec
from consensus.state import ClusterState
from consensus.store import StateVersion, version_of
from consensus.tasks import SERVICES, TASKS, Service, Task, spec_of


@dataclass(frozen=True, slots=True)
class StateView:
    cluster: ClusterInfo
    nodes: Mapping[str, Node]
    services: Mapping[str, Service]  # by name
    tasks: Mapping[str, Task]  # by id
    applied: int = 0
    # What the last commands changed, up to `applied` (the event feed's input).
    changes: tuple[Change, ...] = ()
    crons: Mapping[str, Cron] = field(default_factory=dict)  # by name

    @classmethod
    def capture(cls, state: StateVersion | ClusterState) -> StateView:
        """What scheduling reads, from a version of the state (shared, not copied). A live
        ClusterState is copied first: call it so where no command is applied meanwhile."""
        version = state if isinstance(state, StateVersion) else version_of(state)
        return cls(
            version.cluster,
            version.table(NODES),
            version.table(SERVICES),
            version.table(TASKS),
            version.applied,
            version.changes,
            version.table(CRONS),
        )

    def spec_of(self, task: Task) -> ServiceSpec | None:
        return spec_of(self.services, task)

    def tasks_by_service(self) -> dict[str, list[Task]]:
        """Tasks grouped by service id, in a stable order (by id)."""
        grouped: dict[str, list[Task]] = defaultdict(list)
        for task_id in sorted(self.tasks):
            task = self.tasks[task_id]
            grouped[task.service_id].append(task)
        return grouped
