"""Cluster events, derived by diffing two committed states: services created, updated and
removed, rollout progress, task state changes, nodes joining, going down and coming back.

Pure: `diff_states(before, after)` reads two StateViews and returns the events between them
in a stable order. Every node derives its own events from its own replica, so no event is
ever written to the replicated log; commits that arrive together are diffed together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Union

from consensus.autoscale import AutoscaleRecord
from consensus.rollout import Rollout
from consensus.tasks import Service, Task
from scheduler.view import StateView

EventType = Literal["service.created", "service.updated", "service.removed", "rollout",
                    "service.autoscaled", "task.created", "task.state", "node.joined",
                    "node.status", "node.removed"]


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    at: float  # when it happened, as the state records it
    index: int  # the state's applied index it was seen at
    message: str
    service: str = ""
    task_id: str = ""
    node: str = ""  # node name
    state: str = ""  # the new state: task or node status, rollout state
    # Figures of the event, by name (service.autoscaled: from, to, metric, value, target).
    detail: dict[str, Union[int, float, str]] = field(default_factory=dict)


def _service_events(before: Optional[Service], after: Optional[Service], index: int) -> list[Event]:
    if after is None:
        assert before is not None
        return [Event("service.removed", before.updated_at, index, f"service {before.name} removed",
                      service=before.name)]
    if before is None or before.id != after.id:
        return [Event("service.created", after.created_at, index,
                      f"service {after.name} created (image {after.spec.image})", service=after.name)]
    events = []
    if before.version != after.version:
        events.append(Event("service.updated", after.updated_at, index,
                            f"service {after.name} updated to version {after.version}",
                            service=after.name))
    if after.rollout is not None and after.rollout != before.rollout:
        events.append(_rollout_event(after.name, after.rollout, index))
    if after.autoscaled is not None and after.autoscaled != before.autoscaled:
        events.append(_autoscaled_event(after.name, after.autoscaled, index))
    return events


def _autoscaled_event(name: str, r: AutoscaleRecord, index: int) -> Event:
    return Event("service.autoscaled", r.at, index,
                 f"service {name} autoscaled from {r.from_replicas} to {r.to_replicas} "
                 f"replicas: {r.reason}", service=name,
                 detail={"from": r.from_replicas, "to": r.to_replicas, "metric": r.metric,
                         "value": r.value, "target": r.target})


def _rollout_event(name: str, r: Rollout, index: int) -> Event:
    counts = f"{r.updated}/{r.total} updated" + (f", {r.failed} failed" if r.failed else "")
    return Event("rollout", r.updated_at, index, f"{r.kind} of {name} {r.state}: {counts}; {r.message}",
                 service=name, state=r.state)


def _task_event(before: Optional[Task], after: Task, node: str, index: int) -> Optional[Event]:
    label = f"task {after.service}.{after.slot or node} {after.id[:12]}"
    if before is None:
        return Event("task.created", after.created_at, index, f"{label} created (version "
                     f"{after.spec_version})", service=after.service, task_id=after.id,
                     node=node, state=after.state)
    if (before.state, before.desired) == (after.state, after.desired):
        return None
    why = after.error or after.message
    moved = f"{before.state} -> {after.state}" if before.state != after.state else after.state
    told = f" (told to {after.desired})" if before.desired != after.desired else ""
    return Event("task.state", after.updated_at, index, f"{label} {moved}{told}"
                 + (f": {why}" if why else ""), service=after.service, task_id=after.id,
                 node=node, state=after.state)


def diff_states(before: StateView, after: StateView) -> list[Event]:
    """What happened between two states of one replica, in a stable order."""
    index = after.applied
    events: list[Event] = []
    for node_id in _changed(before.nodes, after.nodes):
        old, new = before.nodes.get(node_id), after.nodes.get(node_id)
        if new is None:
            assert old is not None
            events.append(Event("node.removed", 0.0, index, f"node {old.name} removed",
                                node=old.name))
        elif old is None:
            events.append(Event("node.joined", new.joined_at, index, f"node {new.name} joined "
                                f"as {new.role}", node=new.name, state=new.status))
        elif old.status != new.status:
            events.append(Event("node.status", new.status_changed_at, index,
                                f"node {new.name} is {new.status}", node=new.name, state=new.status))
    for name in _changed(before.services, after.services):
        old_service, new_service = before.services.get(name), after.services.get(name)
        if old_service is not None and new_service is not None and old_service.id != new_service.id:
            events.extend(_service_events(old_service, None, index))
        events.extend(_service_events(old_service, new_service, index))
    for task_id in _changed(before.tasks, after.tasks):
        task = after.tasks.get(task_id)
        if task is None:
            continue  # removed tasks were reported when they ended
        node = after.nodes.get(task.node_id)
        event = _task_event(before.tasks.get(task_id), task, node.name if node else "", index)
        if event is not None:
            events.append(event)
    return events


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Keys whose row was added, replaced or removed, sorted. Rows are immutable and a
    command replaces only the rows it changes, so an unchanged row is the same object: with
    100,000 tasks a commit costs a pass of identity checks, not a comparison of every row."""
    keys = [k for k, row in after.items() if before.get(k) is not row]
    kept = len(after) - len(keys) + sum(k in before for k in keys)  # rows of before still here
    if kept < len(before):  # some went away
        keys.extend(k for k in before if k not in after)
    return sorted(keys)
