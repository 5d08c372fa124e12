"""Where tasks run: `place(view, tasks, seed)` filters the nodes, then scores them.

Tasks of one service and spec version are identical, so they are placed as a batch: the
filter pipeline runs once over the nodes, the survivors go into heaps keyed by score, and
each placement is a pop and a push, O(log n), instead of a scan of every node per task.
With placement preferences the heaps form a tree (one level per preference label) whose
branches are keyed by how many of the service's tasks they hold, so the service spreads
over label values first and over nodes within each value second.
Scores: spread = fewest tasks of this service, then least loaded, then fewest tasks;
binpack = most loaded first. Ties are broken by a node order shuffled from `seed`.
"""

from __future__ import annotations

import heapq
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consensus.services import Constraint, ServiceSpec
from consensus.tasks import Assignment, Task
from scheduler.filters import Pipeline
from scheduler.nodeinfo import NodeInfo, node_infos
from scheduler.view import StateView
from scheduler.volumes import SlotHomes, place_at_homes


@dataclass(frozen=True, slots=True)
class Unplaceable:
    task_id: str
    explanation: str


@dataclass(frozen=True, slots=True)
class PlacementResult:
    placements: tuple[Assignment, ...] = ()
    unplaceable: tuple[Unplaceable, ...] = ()


# Lower is better; compared element by element.
ScoreKey = tuple[float, ...]
Score = Callable[[NodeInfo, str], ScoreKey]


def spread_score(info: NodeInfo, service_id: str) -> ScoreKey:
    return (info.by_service.get(service_id, 0), info.load, info.task_count)


def binpack_score(info: NodeInfo, service_id: str) -> ScoreKey:
    return (-info.load, -info.task_count)


class _Branch:
    """A level of the preference tree. A leaf's heap `nodes` holds (score, rank) of nodes
    (`rank` indexes the round's node order; plain numbers keep the garbage collector out of
    it); an inner branch's heap `branches` holds (tasks of the service below it, rank, child
    branch)."""

    __slots__ = ("nodes", "branches", "leaf", "children")

    def __init__(self, leaf: bool) -> None:
        self.nodes: list[tuple[ScoreKey, int]] = []
        self.branches: list[tuple[int, int, _Branch]] = []
        self.leaf = leaf
        self.children: dict[str, _Branch] = {}

    def take(self) -> tuple[int, _Branch] | None:
        """The best node below this branch, removed from its leaf: (its rank, the leaf)."""
        if self.leaf:
            return (heapq.heappop(self.nodes)[1], self) if self.nodes else None
        while self.branches:
            count, rank, child = self.branches[0]
            found = child.take()
            if found is None:
                heapq.heappop(self.branches)  # every node below is full for this batch
                continue
            heapq.heapreplace(self.branches, (count + 1, rank, child))
            return found
        return None


def _seeded_order(infos: dict[str, NodeInfo], seed: int | str) -> list[NodeInfo]:
    ids = list(infos)  # already sorted by node id
    random.Random(seed).shuffle(ids)
    return [infos[i] for i in ids]


class _StaticCache:
    """What placing tasks cannot change during a round, computed once: the nodes that pass
    the static filters (state, availability, constraints) for each distinct constraint set,
    and each node's values of the preference labels."""

    def __init__(self, ordered: list[NodeInfo]) -> None:
        self.ordered = ordered
        self._eligible: dict[tuple[Constraint, ...], list[tuple[int, NodeInfo]]] = {}
        self._paths: dict[tuple[str, ...], list[tuple[str, ...]]] = {}

    def eligible(self, spec: ServiceSpec, pipeline: Pipeline) -> list[tuple[int, NodeInfo]]:
        found = self._eligible.get(spec.constraints)
        if found is None:
            found = [
                (rank, info)
                for rank, info in enumerate(self.ordered)
                if pipeline.passes_static(info)
            ]
            self._eligible[spec.constraints] = found
        return found

    def label_paths(self, labels: tuple[str, ...]) -> list[tuple[str, ...]]:
        """Per node rank, its values of `labels` ("" where a node lacks one)."""
        found = self._paths.get(labels)
        if found is None:
            found = [
                tuple(info.node.labels.get(label, "") for label in labels) for info in self.ordered
            ]
            self._paths[labels] = found
        return found


def _build_tree(
    feasible: list[tuple[int, NodeInfo]],
    static: _StaticCache,
    spec: ServiceSpec,
    service_id: str,
    score: Score,
) -> _Branch:
    labels = tuple(p.label for p in spec.preferences)
    root = _Branch(leaf=not labels)
    if not labels:
        root.nodes = [(score(info, service_id), rank) for rank, info in feasible]
        heapq.heapify(root.nodes)
        return root
    paths = static.label_paths(labels)
    # Tasks already placed count for their label values, whether their node is feasible or not.
    counts: defaultdict[tuple[str, ...], int] = defaultdict(int)
    for rank, info in enumerate(static.ordered):
        placed = info.by_service.get(service_id, 0)
        if placed:
            for depth in range(1, len(labels) + 1):
                counts[paths[rank][:depth]] += placed
    for rank, info in feasible:
        branch, path = root, paths[rank]
        for depth in range(len(labels)):
            child = branch.children.get(path[depth])
            if child is None:
                child = branch.children[path[depth]] = _Branch(leaf=depth == len(labels) - 1)
                branch.branches.append((counts[path[: depth + 1]], rank, child))
            branch = child
        branch.nodes.append((score(info, service_id), rank))
    _heapify(root)
    return root


def _heapify(branch: _Branch) -> None:
    heapq.heapify(branch.nodes)
    heapq.heapify(branch.branches)
    for child in branch.children.values():
        _heapify(child)


def _place_batch(
    batch: list[Task], spec: ServiceSpec, static: _StaticCache, score: Score
) -> tuple[list[Assignment], list[Unplaceable]]:
    first = batch[0]
    pipeline = Pipeline(first, spec)
    passes = pipeline.passes_dynamic
    feasible = [(rank, info) for rank, info in static.eligible(spec, pipeline) if passes(info)]
    tree = _build_tree(feasible, static, spec, first.service_id, score)
    placed: list[Assignment] = []
    for i, task in enumerate(batch):
        found = tree.take()
        if found is None:
            why = pipeline.explain(static.ordered)
            return placed, [Unplaceable(t.id, why) for t in batch[i:]]
        rank, leaf = found
        info = static.ordered[rank]
        info.add(task)
        placed.append(Assignment(task.id, info.node.id))
        if passes(info):  # still room for the next identical task
            heapq.heappush(leaf.nodes, (score(info, task.service_id), rank))
    return placed, []


def _place_bound(
    task: Task, spec: ServiceSpec, infos: dict[str, NodeInfo]
) -> Assignment | Unplaceable:
    """A task made for a node (a global task, a rebalancing move's copy) may only go there."""
    info = infos.get(task.node_id)
    if info is None:
        return Unplaceable(task.id, f"node {task.node_id} is gone")
    pipeline = Pipeline(task, spec)
    if not pipeline.passes(info):
        return Unplaceable(task.id, pipeline.explain([info]))
    info.add(task)
    return Assignment(task.id, info.node.id)


def _batches(tasks: Sequence[Task]) -> list[list[Task]]:
    """Identical tasks together (same service and spec version), in first-seen order;
    every task made for a node alone (see `_place_bound`)."""
    batches: dict[tuple[str, int], list[Task]] = {}
    singles: list[list[Task]] = []
    for task in tasks:
        if task.node_id:
            singles.append([task])
        else:
            batches.setdefault((task.service_id, task.spec_version), []).append(task)
    return [*batches.values(), *singles]


def place(
    view: StateView,
    tasks: Sequence[Task],
    seed: int | str,
    infos: dict[str, NodeInfo] | None = None,
) -> PlacementResult:
    """Choose a node for each pending task, or explain why none fits. Pure and deterministic
    for a given view, task order and seed. `infos` (built from the view when omitted) is
    updated in place with every placement."""
    if infos is None:
        infos = node_infos(view.nodes, view.tasks.values())
    score = binpack_score if view.cluster.strategy == "binpack" else spread_score
    static = _StaticCache(_seeded_order(infos, seed))
    homes = SlotHomes(view)
    placements: list[Assignment] = []
    unplaceable: list[Unplaceable] = []
    for batch in _batches(tasks):
        spec = view.spec_of(batch[0])
        if spec is None:
            unplaceable.extend(
                Unplaceable(t.id, "its service or spec version is gone") for t in batch
            )
        elif batch[0].node_id:
            outcome = _place_bound(batch[0], spec, infos)
            if isinstance(outcome, Assignment):
                placements.append(outcome)
            else:
                unplaceable.append(outcome)
        else:
            # Slots whose volume data is on a node go back there; the others are free.
            free, placed_home, waiting = place_at_homes(batch, spec, homes, infos)
            placements.extend(placed_home)
            unplaceable.extend(Unplaceable(w.task_id, w.message) for w in waiting)
            placed, failed = _place_batch(free, spec, static, score) if free else ([], [])
            placements.extend(placed)
            unplaceable.extend(failed)
    return PlacementResult(tuple(placements), tuple(unplaceable))
