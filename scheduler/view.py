"""A consistent, read-only picture of the cluster state for one scheduling round.

Rows are frozen dataclasses, so copying the table dicts (not the rows) is enough to keep a
round's view still while Raft goes on applying commands to the live state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from consensus.changes import Change
from consensus.crons import Cron, crons
from consensus.model import ClusterInfo, Node
from consensus.nodes import nodes
from consensus.services import ServiceSpec
from consensus.state import ClusterState
from consensus.tasks import Service, Task, services, tasks


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
    def capture(cls, state: ClusterState) -> StateView:
        """Copy what scheduling reads. Call it where no command is being applied meanwhile."""
        return cls(
            state.cluster,
            dict(nodes(state)),
            dict(services(state)),
            dict(tasks(state)),
            state.applied,
            state.changes.snapshot(),
            dict(crons(state)),
        )

    def spec_of(self, task: Task) -> ServiceSpec | None:
        service = self.services.get(task.service)
        if service is None or service.id != task.service_id:
            return None
        return service.spec_at(task.spec_version)

    def tasks_by_service(self) -> dict[str, list[Task]]:
        """Tasks grouped by service id, in a stable order (by id)."""
        grouped: dict[str, list[Task]] = defaultdict(list)
        for task_id in sorted(self.tasks):
            task = self.tasks[task_id]
            grouped[task.service_id].append(task)
        return grouped
