"""Cluster events, derived from committed changes: services created, updated and removed,
rollout progress, task state changes, nodes joining, going down and coming back, and the
audit trail of API writes (consensus.audit; a diff of states, below, does not hold those).

Pure: `events_between(before, after)` reads two StateViews and returns the events of the
commands applied between them, in a stable order. No event is written to the replicated
log: every node derives them from the row changes each command made (consensus.changes),
which are the same on every node, so an event's `seq` (its command's index and its place
among that command's events) names the same event on every node, and `since=` from one node
means the same on another. A node whose kept changes do not reach back far enough (it fell
more than a few thousand commands behind, or restored a snapshot) diffs the two states
instead (`diff_states`) and numbers those events by the later state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from consensus.audit import AUDIT, AuditEntry
from consensus.autoscale import AutoscaleRecord
from consensus.changes import Change, RowChange, covering
from consensus.model import Node
from consensus.nodes import NODES
from consensus.rollout import Rollout
from consensus.tasks import SERVICES, TASKS, Service, Task
from scheduler.view import StateView

# An event's seq is index × SEQ_SPAN + position: more events than one command can make (it
# places at most a service's 1,000,000 replicas).
SEQ_SPAN = 10_000_000

EventType = Literal[
    "service.created",
    "service.updated",
    "service.removed",
    "rollout",
    "service.autoscaled",
    "job.ended",
    "task.created",
    "task.state",
    "node.joined",
    "node.status",
    "node.removed",
    "audit",
]


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    at: float  # when it happened, as the state or the command records it
    index: int  # the command that made it: the state's applied counter right after it
    message: str
    service: str = ""
    task_id: str = ""
    node: str = ""  # node name
    state: str = ""  # the new state: task or node status, rollout state
    # Figures of the event, by name (service.autoscaled: from, to, metric, value, target).
    detail: dict[str, int | float | str] = field(default_factory=dict)
    position: int = 0  # its place among the events of command `index`

    @property
    def seq(self) -> int:
        """The event's number, the same on every node (see the module's docstring)."""
        return self.index * SEQ_SPAN + self.position


def _service_events(
    before: Service | None, after: Service | None, index: int, removed_at: float
) -> list[Event]:
    if after is None:
        assert before is not None
        return [
            Event(
                "service.removed",
                removed_at,
                index,
                f"service {before.name} removed",
                service=before.name,
            )
        ]
    if before is None or before.id != after.id:
        return [
            Event(
                "service.created",
                after.created_at,
                index,
                f"service {after.name} created (image {after.spec.image})",
                service=after.name,
            )
        ]
    events = []
    if before.version != after.version:
        events.append(
            Event(
                "service.updated",
                after.updated_at,
                index,
                f"service {after.name} updated to version {after.version}",
                service=after.name,
            )
        )
    if after.rollout is not None and after.rollout != before.rollout:
        events.append(_rollout_event(after.name, after.rollout, index))
    if after.autoscaled is not None and after.autoscaled != before.autoscaled:
        events.append(_autoscaled_event(after.name, after.autoscaled, index))
    if after.job_end is not None and before.job_end is None:
        end = after.job_end
        events.append(
            Event(
                "job.ended",
                end.at,
                index,
                f"job {after.name} {end.state}: {end.reason}",
                service=after.name,
                state=end.state,
            )
        )
    return events


def _autoscaled_event(name: str, r: AutoscaleRecord, index: int) -> Event:
    return Event(
        "service.autoscaled",
        r.at,
        index,
        f"service {name} autoscaled from {r.from_replicas} to {r.to_replicas} replicas: {r.reason}",
        service=name,
        detail={
            "from": r.from_replicas,
            "to": r.to_replicas,
            "metric": r.metric,
            "value": r.value,
            "target": r.target,
        },
    )


def _rollout_event(name: str, r: Rollout, index: int) -> Event:
    counts = f"{r.updated}/{r.total} updated" + (f", {r.failed} failed" if r.failed else "")
    return Event(
        "rollout",
        r.updated_at,
        index,
        f"{r.kind} of {name} {r.state}: {counts}; {r.message}",
        service=name,
        state=r.state,
    )


def _task_event(before: Task | None, after: Task, node: str, index: int) -> Event | None:
    label = f"task {after.service}.{after.slot or node} {after.id[:12]}"
    if before is None:
        return Event(
            "task.created",
            after.created_at,
            index,
            f"{label} created (version {after.spec_version})",
            service=after.service,
            task_id=after.id,
            node=node,
            state=after.state,
        )
    if (before.state, before.desired) == (after.state, after.desired):
        return None
    why = after.error or after.message
    moved = f"{before.state} -> {after.state}" if before.state != after.state else after.state
    told = f" (told to {after.desired})" if before.desired != after.desired else ""
    return Event(
        "task.state",
        after.updated_at,
        index,
        f"{label} {moved}{told}" + (f": {why}" if why else ""),
        service=after.service,
        task_id=after.id,
        node=node,
        state=after.state,
    )


def _node_event(old: Node | None, new: Node | None, index: int, at: float) -> Event | None:
    if new is None:
        assert old is not None
        return Event("node.removed", at, index, f"node {old.name} removed", node=old.name)
    if old is None:
        return Event(
            "node.joined",
            new.joined_at,
            index,
            f"node {new.name} joined as {new.role}",
            node=new.name,
            state=new.status,
        )
    if old.status != new.status:
        return Event(
            "node.status",
            new.status_changed_at,
            index,
            f"node {new.name} is {new.status}",
            node=new.name,
            state=new.status,
        )
    return None


def _events(
    node_rows: list[tuple[Node | None, Node | None]],
    service_rows: list[tuple[Service | None, Service | None]],
    task_rows: list[tuple[Task | None, Task | None]],
    nodes: Mapping[str, Node],
    index: int,
    at: float,
) -> list[Event]:
    """The events of rows changed at `index`, each list sorted by key, numbered in order:
    nodes, then services, then tasks. `at` is when the change happened, if known (0.0)."""
    events = [e for old, new in node_rows if (e := _node_event(old, new, index, at))]
    for old, new in service_rows:
        if old is not None and new is not None and old.id != new.id:
            events.extend(_service_events(old, None, index, at or old.updated_at))
            old = None
        events.extend(_service_events(old, new, index, at or (old.updated_at if old else 0.0)))
    for old, new in task_rows:
        if new is None:
            continue  # removed tasks were reported when they ended
        node = nodes.get(new.node_id)
        event = _task_event(old, new, node.name if node else "", index)
        if event is not None:
            events.append(event)
    return [dataclasses.replace(e, position=i) for i, e in enumerate(events)]


def audit_event(entry: AuditEntry, index: int) -> Event:
    """An API write: who made it, the route, what it named and its status (never a body)."""
    named = f" ({entry.resource})" if entry.resource else ""
    return Event(
        "audit",
        entry.at,
        index,
        f"{entry.who} {entry.method} {entry.path}{named}: {entry.status}",
        service=entry.service,
        detail={
            "who": entry.who,
            "role": entry.role,
            "method": entry.method,
            "path": entry.path,
            "resource": entry.resource,
            "status": entry.status,
        },
    )


def change_events(change: Change, nodes: Mapping[str, Node]) -> list[Event]:
    """The events of one command's change; `nodes` names the nodes tasks run on."""

    def rows(table: str) -> list[tuple[Any, Any]]:
        mine: list[RowChange] = sorted(
            (r for r in change.rows if r.table == table), key=lambda r: r.key
        )
        return [(r.before, r.after) for r in mine]

    node_rows = rows(NODES)
    if node_rows:  # a task's node may have joined in this very command
        nodes = {**nodes, **{new.id: new for _old, new in node_rows if new is not None}}
    events = _events(node_rows, rows(SERVICES), rows(TASKS), nodes, change.index, change.at)
    # Audit rows come in a command of their own: numbered after any other events all the same.
    audited = [
        audit_event(new, change.index)
        for old, new in rows(AUDIT)
        if old is None and new is not None
    ]
    return events + [
        dataclasses.replace(e, position=len(events) + i) for i, e in enumerate(audited)
    ]


def diff_states(before: StateView, after: StateView) -> list[Event]:
    """What happened between two states of one replica, in a stable order, all numbered by
    the later state (a removal carries the removed row's last update time)."""

    def rows(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[Any, Any]]:
        return [(old.get(key), new.get(key)) for key in _changed(old, new)]

    return _events(
        rows(before.nodes, after.nodes),
        rows(before.services, after.services),
        rows(before.tasks, after.tasks),
        after.nodes,
        after.applied,
        0.0,
    )


def events_between(before: StateView, after: StateView) -> list[Event]:
    """The events of the commands applied after `before` up to `after`, each numbered by its
    own command, or, when `after` does not hold all their changes, by a diff of the states."""
    changes = covering(after.changes, before.applied, after.applied)
    if changes is None:
        return diff_states(before, after)
    return [event for change in changes for event in change_events(change, after.nodes)]


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Keys whose row was added, replaced or removed, sorted. Rows are immutable and a
    command replaces only the rows it changes, so an unchanged row is the same object: with
    100,000 tasks a commit costs a pass of identity checks, not a comparison of every row."""
    keys = [k for k, row in after.items() if before.get(k) is not row]
    kept = len(after) - len(keys) + sum(k in before for k in keys)  # rows of before still here
    if kept < len(before):  # some went away
        keys.extend(k for k in before if k not in after)
    return sorted(keys)
