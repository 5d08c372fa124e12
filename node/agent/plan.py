"""What the agent should do, level-triggered: the tasks assigned to this node (from the
replicated state) against the tasks it runs (its runners) -> which to start, which to retire,
and which reports settle tasks that have nothing left running here. Pure: tested with tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from consensus.services import ServiceSpec
from consensus.store import StateVersion
from consensus.tasks import Task, TaskReport, services, spec_of, tasks_on

# starting: the driver is starting it. running: it runs and is watched. ended: it ended; its
# remains (logs, exit status) stay until it is retired. retiring: being stopped and removed.
Phase = Literal["starting", "running", "ended", "retiring"]

# States in which an assigned task that this node does not run yet is (re)started: the
# agent may have died between reporting "starting" and starting it. A task reported running
# that the runtime no longer knows ended unseen; it is reported failed instead.
_STARTABLE = frozenset({"assigned", "preparing", "starting"})
_LOST = "its container or process was gone when the agent restarted"


@dataclass(frozen=True, slots=True)
class Assigned:
    """A task bound to this node and the spec version it was created from (None if gone)."""

    task: Task
    spec: ServiceSpec | None


@dataclass(frozen=True, slots=True)
class Retire:
    """Wait `drain` seconds if it still runs, stop it (with `grace`, or the runner's own when
    None), remove it, then send `report`."""

    task_id: str
    grace: float | None = None
    report: TaskReport | None = None
    drain: float = 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    start: tuple[Assigned, ...] = ()
    retire: tuple[Retire, ...] = ()
    reports: tuple[TaskReport, ...] = ()


def assigned_to(state: StateVersion, node_id: str) -> dict[str, Assigned]:
    """The tasks bound to `node_id` with their specs."""
    by_name = services(state)
    found: dict[str, Assigned] = {}
    for task in tasks_on(state, node_id).values():
        # A global task names its node before it is placed; it is not ours until assigned.
        if task.state == "pending":
            continue
        found[task.id] = Assigned(task, spec_of(by_name, task))
    return found


def _wanted(entry: Assigned | None) -> bool:
    return entry is not None and entry.task.desired == "running"


def _shutdown_report(task: Task) -> TaskReport:
    # The scheduler's reason (scaled down, node drained) stays the task's message.
    return TaskReport(task.id, "shutdown", message=task.message or "shut down")


def drain_period(entry: Assigned, phase: Phase) -> float:
    """How long a task told to shut down keeps running first. Only a running task with ports
    can be an endpoint in some node's load balancer or DNS: the routing mesh withdraws it as
    soon as the shutdown is committed, and the other nodes hear of that by gossip. Stopping
    it before they have would cut the connections they still send it."""
    if phase != "running" or entry.spec is None or not entry.spec.ports:
        return 0.0
    return entry.spec.stop_delay


def decide(assigned: Mapping[str, Assigned], local: Mapping[str, Phase]) -> Decision:
    start: list[Assigned] = []
    reports: list[TaskReport] = []
    for task_id in sorted(assigned):
        entry = assigned[task_id]
        task = entry.task
        if task_id in local or task.terminal:
            continue
        if task.desired == "shutdown":
            reports.append(_shutdown_report(task))  # nothing of it runs here: it is over
        elif task.state in _STARTABLE:
            start.append(entry)
        else:
            reports.append(TaskReport(task_id, "failed", error=_LOST))
    retire: list[Retire] = []
    for task_id in sorted(local):
        entry = assigned.get(task_id)
        if local[task_id] == "retiring" or _wanted(entry):
            continue
        if entry is None:  # gone from the state, or never ours: an orphan
            retire.append(Retire(task_id))
            continue
        grace = entry.spec.stop_grace_period if entry.spec is not None else None
        report = None if entry.task.terminal else _shutdown_report(entry.task)
        retire.append(Retire(task_id, grace, report, drain_period(entry, local[task_id])))
    return Decision(tuple(start), tuple(retire), tuple(reports))


class Planner:
    """`decide` for one node, after each commit: None when the commits since the last
    decision left this node's tasks, the services and the tasks running here as they were
    (commits about other nodes), which it tells by comparing references, since a version
    shares every index group and table a commit did not touch with the one before. The work
    of a commit is then proportional to what it changed here, not to the cluster."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.decisions = 0  # how many times it looked at this node's tasks
        self.rows_read = 0  # and how many task rows in all
        # What the last decision was made from.
        self._last: tuple[Mapping[str, Task], Mapping[str, Any], dict[str, Phase]] | None = None

    def decide(self, state: StateVersion, local: Mapping[str, Phase]) -> Decision | None:
        mine, specs, local = tasks_on(state, self.node_id), services(state), dict(local)
        last = self._last
        if last is not None and mine is last[0] and specs is last[1] and local == last[2]:
            return None
        self._last = (mine, specs, local)
        self.decisions += 1
        self.rows_read += len(mine)
        return decide(assigned_to(state, self.node_id), local)
