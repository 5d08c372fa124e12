"""Rebalancing: which running task to move so a service spreads evenly over its nodes again
(a node joined or came back, or a drain ended). Pure, part of `reconcile` (`now` comes in).

A move is start-first: a copy of the task is created in its slot (`Task.replaces`), placed
by the usual spread scoring, and the moved task stops only once the copy is ready (then it
drains like any stopped task); a copy that fails is dropped and the task stays. Moves only
happen while nothing else changes the service (no rollout, every task ready), at most
`max_unavailable` at once and one per REBALANCE_INTERVAL, never for tasks that keep their
named volumes on a node, and only for replicated services without placement preferences
under the spread strategy. `auto` services rebalance whenever the spread drifts, `manual`
ones for MANUAL_WINDOW after `shoal service rebalance`.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.services import ServiceSpec
from consensus.tasks import Service, Task
from scheduler.rollout import SlotTasks, is_ready
from scheduler.view import StateView

REBALANCE_INTERVAL = 5.0  # seconds between two moves of one service
MANUAL_WINDOW = 600.0  # how long a rebalance asked for by hand goes on


@dataclass(frozen=True, slots=True)
class Move:
    task: Task | None = None  # the task to move now
    wake_at: float | None = None  # when a move may be due


def keeps_volumes(spec: ServiceSpec) -> bool:
    """Its tasks stay on the node holding their named volumes' data: they never move."""
    return spec.volume_affinity == "node" and any(
        v.type == "volume" and v.source for v in spec.volumes
    )


def _why_not(view: StateView, service: Service, now: float) -> str:
    spec = service.spec
    if spec.rebalance == "off" or spec.mode != "replicated" or spec.job is not None:
        return "not rebalanced"
    if spec.rebalance == "manual" and not (
        service.rebalance_requested_at and now < service.rebalance_requested_at + MANUAL_WINDOW
    ):
        return "not asked to"
    if spec.preferences or view.cluster.strategy != "spread":
        return "placed by preferences or binpack"
    if service.rollout is not None and service.rollout.active:
        return "rolling out"
    if keeps_volumes(spec):
        return "its tasks keep their volumes on their nodes"
    return ""


def plan_move(view: StateView, service: Service, slots: list[SlotTasks], now: float) -> Move:
    """The task of `service` to move now, if any. `slots` are its wanted slots."""
    if _why_not(view, service, now):
        return Move()
    spec = service.spec
    changing = sum(1 for s in slots if s.handover or s.extra or not is_ready(s.primary, spec))
    if changing >= spec.move_budget or len(slots) < spec.replicas:
        return Move()  # the service's own changes first; their commits wake us again
    counts = {
        node.id: 0
        for node in view.nodes.values()
        if node.status == "ready"
        and node.availability == "active"
        and all(c.matches(node) for c in spec.constraints)
    }
    for slot in slots:
        if slot.primary.node_id in counts:
            counts[slot.primary.node_id] += 1
    if len(counts) < 2:
        return Move()
    busiest = max(counts, key=lambda n: (counts[n], n))
    idlest = min(counts, key=lambda n: (counts[n], n))
    if counts[busiest] - counts[idlest] < 2:
        return Move()
    # The last move's copy runs its slot now (the service's other tasks are all ready).
    last = max((s.primary.created_at for s in slots if s.primary.replaces), default=None)
    if last is not None and now < last + REBALANCE_INTERVAL:
        return Move(wake_at=last + REBALANCE_INTERVAL)
    return Move(
        max((s.primary for s in slots if s.primary.node_id == busiest), key=lambda t: t.slot)
    )
