"""Rebalancing: which running task to move, and where, so a service spreads evenly over its
nodes again (a node joined or came back, or a drain ended), and over the values of its
placement preferences' labels first (`--placement-pref spread=node.labels.zone`: as many
tasks in each zone, then as many on each node of a zone). Pure, part of `reconcile` (`now`
comes in).

A move is start-first: a copy of the task is created in its slot (`Task.replaces`) bound to
the node chosen here (placement puts it nowhere else), and the moved task stops only once
the copy is ready (then it drains like any stopped task); a copy that fails is dropped and
the task stays. Moves only happen while nothing else changes the service (no rollout, every
task ready), at most `max_unavailable` at once and one per REBALANCE_INTERVAL, never for
tasks that keep their named volumes on a node, only for replicated services under the
spread strategy, and only to a node the copy fits on. `auto` services rebalance whenever
the spread drifts, `manual` ones for MANUAL_WINDOW after `shoal service rebalance`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from consensus.services import ServiceSpec
from consensus.tasks import Service, Task
from scheduler.filters import Pipeline
from scheduler.nodeinfo import node_infos
from scheduler.rollout import SlotTasks, is_ready
from scheduler.view import StateView

REBALANCE_INTERVAL = 5.0  # seconds between two moves of one service
MANUAL_WINDOW = 600.0  # how long a rebalance asked for by hand goes on


@dataclass(frozen=True, slots=True)
class Move:
    task: Task | None = None  # the task to move now
    to: str = ""  # the node its copy goes to
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
    if view.cluster.strategy != "spread":
        return "binpacked"
    if service.rollout is not None and service.rollout.active:
        return "rolling out"
    if keeps_volumes(spec):
        return "its tasks keep their volumes on their nodes"
    return ""


def plan_move(view: StateView, service: Service, slots: list[SlotTasks], now: float) -> Move:
    """The task of `service` to move now and its new node, if any. `slots` are its wanted slots."""
    if _why_not(view, service, now):
        return Move()
    spec = service.spec
    changing = sum(1 for s in slots if s.handover or s.extra or not is_ready(s.primary, spec))
    if changing >= spec.move_budget or len(slots) < spec.replicas:
        return Move()  # the service's own changes first; their commits wake us again
    eligible = [
        node
        for node in view.nodes.values()
        if node.status == "ready"
        and node.availability == "active"
        and all(c.matches(node) for c in spec.constraints)
    ]
    if len(eligible) < 2:
        return Move()
    counts = {node.id: 0 for node in eligible}
    for slot in slots:
        if slot.primary.node_id in counts:
            counts[slot.primary.node_id] += 1
    labels = tuple(p.label for p in spec.preferences)
    spread = Spread(
        counts,
        {node.id: tuple(node.labels.get(label, "") for label in labels) for node in eligible},
        len(labels),
        set(counts),
    )
    if uneven(spread) is None:  # the common case, every round: no need to see what fits where
        return Move()
    # The last move's copy runs its slot now (the service's other tasks are all ready).
    last = max((s.primary.created_at for s in slots if s.primary.replaces), default=None)
    if last is not None and now < last + REBALANCE_INTERVAL:
        return Move(wake_at=last + REBALANCE_INTERVAL)
    found = uneven(dataclasses.replace(spread, fits=_fitting(view, spec, slots[0].primary, counts)))
    if found is None:
        return Move()
    source, target = found
    return Move(
        max((s.primary for s in slots if s.primary.node_id == source), key=lambda t: t.slot),
        to=target,
    )


def _fitting(view: StateView, spec: ServiceSpec, task: Task, counts: dict[str, int]) -> set[str]:
    """The nodes among `counts` that a copy of `task` fits on now."""
    infos = node_infos({n: view.nodes[n] for n in counts}, view.tasks.values())
    pipeline = Pipeline(task, spec)
    return {node_id for node_id, info in infos.items() if pipeline.passes(info)}


@dataclass(frozen=True, slots=True)
class Spread:
    """A service's tasks over its eligible nodes: the count per node, each node's values of
    the `levels` preference labels, and the nodes a copy would fit on."""

    counts: dict[str, int]
    paths: dict[str, tuple[str, ...]]
    levels: int
    fits: set[str]

    def groups(self, nodes: list[str], depth: int) -> dict[str, list[str]]:
        """`nodes` by their value of the preference label at `depth`; past the last label,
        each node is a group of its own."""
        grouped: dict[str, list[str]] = {}
        for node_id in nodes:
            grouped.setdefault(
                self.paths[node_id][depth] if depth < self.levels else node_id, []
            ).append(node_id)
        return grouped

    def total(self, nodes: list[str]) -> int:
        return sum(self.counts[n] for n in nodes)


def uneven(
    spread: Spread, nodes: list[str] | None = None, depth: int = 0
) -> tuple[str, str] | None:
    """A move (from node, to node) that evens out the spread of `nodes` (default: all) at
    `depth` or below, the top level first (as placement fills them), or None when every
    level is even: no group holds 2 or more tasks than a sibling group a copy fits in."""
    groups = spread.groups(sorted(spread.counts) if nodes is None else nodes, depth)
    open_groups = [g for g in groups if spread.fits.intersection(groups[g])]
    if len(groups) > 1 and open_groups:
        busiest = max(groups, key=lambda g: (spread.total(groups[g]), g))
        idlest = min(open_groups, key=lambda g: (spread.total(groups[g]), g))
        if spread.total(groups[busiest]) - spread.total(groups[idlest]) >= 2:
            source = max(groups[busiest], key=lambda n: (spread.counts[n], n))
            return source, _idlest_node(spread, groups[idlest], depth + 1)
    if depth < spread.levels:
        for key in sorted(groups):
            found = uneven(spread, groups[key], depth + 1)
            if found is not None:
                return found
    return None


def _idlest_node(spread: Spread, nodes: list[str], depth: int) -> str:
    """Where placement would put a task among `nodes` (some of which it fits on): the group
    with the fewest tasks at each level from `depth` on, then the node with the fewest."""
    while depth <= spread.levels:
        groups = spread.groups([n for n in nodes if n in spread.fits], depth)
        nodes = groups[min(groups, key=lambda g: (spread.total(groups[g]), g))]
        depth += 1
    return nodes[0]
