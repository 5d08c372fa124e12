"""Volume affinity: a slot whose task wrote to a named local volume goes back to the node
holding that data (`volume_affinity: node`, the default) instead of starting empty elsewhere.

When that node cannot take the task (down, drained, full) the task stays pending and says
so: "the data of its named volumes is on node n2, which is down". The slots' homes come from the task history
in one pass over the round's tasks, made only when a pending task needs it; each check is
then a dict lookup and one node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from consensus.services import ServiceSpec
from consensus.tasks import Assignment, Explanation, Task
from consensus.volumes import SlotKey, keeps_local_data, slot_homes
from scheduler.filters import Pipeline
from scheduler.nodeinfo import NodeInfo
from scheduler.view import StateView


class SlotHomes:
    """Where each slot of the services that keep local data last ran, computed on first use."""

    def __init__(self, view: StateView) -> None:
        self._view = view
        self._homes: dict[SlotKey, str] | None = None

    def of(self, task: Task) -> str | None:
        if self._homes is None:
            sticky = {s.id for s in self._view.services.values() if keeps_local_data(s.spec)}
            self._homes = (
                slot_homes(self._view.tasks.values(), sticky, self._view.spec_of) if sticky else {}
            )
        return self._homes.get((task.service_id, task.slot))


def home_problem(home_id: str, info: NodeInfo | None, pipeline: Pipeline) -> str:
    """Why the slot's home node cannot take the task now, or "" when it can."""
    if info is None:
        return (
            f"the data of its named volumes is on node {home_id}, which has left the cluster: set "
            "volume_affinity none to start the task elsewhere on an empty volume"
        )
    node = info.node
    if node.status != "ready":
        return f"the data of its named volumes is on node {node.name}, which is {node.status}"
    if node.availability != "active":
        state = {"pause": "paused", "drain": "drained"}.get(node.availability, node.availability)
        return f"the data of its named volumes is on node {node.name}, which is {state}"
    if not pipeline.passes(info):
        return f"the data of its named volumes is on node {node.name}: {pipeline.explain([info])}"
    return ""


def place_at_homes(
    batch: Sequence[Task], spec: ServiceSpec, homes: SlotHomes, infos: Mapping[str, NodeInfo]
) -> tuple[list[Task], list[Assignment], list[Explanation]]:
    """Place the tasks of `batch` whose slot has a home on it; returns the tasks without a
    home (free to go anywhere), the placements and the tasks that must wait."""
    if not keeps_local_data(spec):
        return list(batch), [], []
    pipeline = Pipeline(batch[0], spec)  # tasks of a batch are identical
    homeless: list[Task] = []
    placed: list[Assignment] = []
    waiting: list[Explanation] = []
    for task in batch:
        home_id = homes.of(task)
        if home_id is None:
            homeless.append(task)
            continue
        info = infos.get(home_id)
        problem = home_problem(home_id, info, pipeline)
        if problem:
            waiting.append(Explanation(task.id, problem))
            continue
        assert info is not None
        info.add(task)
        placed.append(Assignment(task.id, home_id))
    return homeless, placed, waiting
