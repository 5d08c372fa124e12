"""What should change: `reconcile(view, now, new_id)` compares each service's spec with its
tasks and returns a Plan: tasks to stop, to forget and to create, and earlier pending tasks
to place again. Pure: `now` and fresh ids come in as arguments.

Slots: a replicated service has slots 1..replicas, a global one a slot per eligible node;
each slot has one task told to run (during a start-first update, also the older task it
replaces until the new one is ready, see scheduler.rollout, which plans updates; in an
update's canary phase, also a canary beside it; during a move off a draining node or a
rebalancing one, see scheduler.rebalance, also the task moved).
A replacement keeps its predecessor's slot, and the predecessor is told to shut down in the
same command, so when a node that was down comes back its agent stops the stale task
instead of running the slot twice. Jobs are planned by scheduler.jobs.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from consensus.job_runs import EndJob, ExpireJob
from consensus.model import Node
from consensus.services import Constraint, PortSpec, RestartPolicy, ServiceSpec
from consensus.tasks import Service, StopTask, Task
from scheduler.jobs import plan_job
from scheduler.rebalance import keeps_volumes, plan_move
from scheduler.rollout import RolloutCommand, SlotTasks, current, is_ready, plan_rollout, sort_slot
from scheduler.view import StateView

# Ended tasks kept per slot, so `service ps` can show what happened.
TASK_HISTORY = 5
# Restart backoff doubles per restart of a slot up to this (or the policy's delay if larger).
MAX_BACKOFF = 300.0

SlotKey = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Plan:
    stop: tuple[StopTask, ...] = ()
    remove: tuple[str, ...] = ()
    create: tuple[Task, ...] = ()  # new tasks, pending: to create and place
    pending: tuple[Task, ...] = ()  # tasks created earlier and still pending: to place
    wake_at: float | None = None  # the earliest restart backoff or rollout step not yet due
    rollouts: tuple[RolloutCommand, ...] = ()  # to propose after the tasks
    jobs: tuple[
        EndJob | ExpireJob, ...
    ] = ()  # jobs that ended or expired: to propose after the tasks


def restart_backoff(policy: RestartPolicy, restarts: int) -> float:
    """Seconds to wait after a slot's task ended before replacing it."""
    if policy.delay <= 0:
        return 0.0
    return min(policy.delay * 2.0 ** min(restarts, 20), max(policy.delay, MAX_BACKOFF))


def node_problem(node: Node | None, spec: ServiceSpec) -> str:
    """Why a task of `spec` may not keep running on `node`, or "" when it may."""
    if node is None:
        return "node is gone"
    if node.status == "down":
        return f"node {node.name} is down"
    if node.availability == "drain":
        return f"node {node.name} is drained"
    unmet = next((c for c in spec.constraints if not c.matches(node)), None)
    return f"node {node.name} no longer meets constraint {unmet}" if unmet else ""


class _Planner:
    def __init__(
        self, view: StateView, now: float, new_id: Callable[[], str], max_new_slots: int | None
    ) -> None:
        self.view, self.now, self.new_id = view, now, new_id
        # Tasks for slots that have none: a round places a bounded batch, so making the rest
        # now would only be thrown away (100,000 at once cost more than placing a batch).
        self.slots_left = max_new_slots
        # What depends on a node and a spec's constraints alone: services share both.
        self._node_problems: dict[tuple[str, tuple[Constraint, ...]], str] = {}
        self._host_ports: tuple[PortSpec, ...] = ()  # of the service being planned
        self._move_room = 0  # start-first moves the service being planned may still begin
        self.stop: list[StopTask] = []
        self.remove: list[str] = []
        self.create: list[Task] = []
        self.pending: list[Task] = []
        self.wake_at: float | None = None
        self.rollouts: list[RolloutCommand] = []
        self.jobs: list[EndJob | ExpireJob] = []

    def plan(self) -> Plan:
        by_service = self.view.tasks_by_service()
        for name in sorted(self.view.services):
            service = self.view.services[name]
            self.service(service, by_service.pop(service.id, []))
        for orphans in by_service.values():  # tasks of deleted services
            self.collect(orphans, service_exists=False)
        return Plan(
            tuple(self.stop),
            tuple(self.remove),
            tuple(self.create),
            tuple(self.pending),
            self.wake_at,
            tuple(self.rollouts),
            tuple(self.jobs),
        )

    # -- one service -----------------------------------------------------------------
    def service(self, service: Service, tasks: list[Task]) -> None:
        if service.spec.job is not None:
            plan_job(self, service, tasks)
            return
        spec = service.spec
        self._host_ports = spec.host_ports
        live: defaultdict[SlotKey, list[Task]] = defaultdict(list)
        for task in tasks:
            if task.desired == "running":
                live[task.slot_key].append(task)
        if spec.mode == "replicated":
            wanted = {(slot, "") for slot in range(1, spec.replicas + 1)}
        else:
            wanted = {
                (0, node.id)
                for node in self.view.nodes.values()
                if node.availability == "active" and not self.node_problem(node, spec)
            }
        # Start-first moves under way (rebalancing, drain) count against the budget; canaries don't.
        self._move_room = spec.move_budget - sum(
            sum(not t.canary for t in tasks) > 1 for tasks in live.values()
        )
        left_alone: list[SlotTasks] = []
        for key in sorted(live):
            slot = sort_slot(
                key, live[key], lambda t: current(service, t), lambda t: is_ready(t, spec)
            )
            for task in slot.extra:
                self.stop.append(StopTask(task.id, self.why_extra(service, slot.primary, task)))
            if slot.handover is not None and key not in wanted:
                self.stop.append(StopTask(slot.handover.id, "service scaled down"))
            if slot.beside is not None:
                self.canary(service, slot.beside, key in wanted)
            moved = slot.handover is not None and slot.primary.replaces == slot.handover.id
            if moved and slot.primary.terminal:  # a failed move: the moved task stays
                self.stop.append(
                    StopTask(slot.primary.id, f"move failed: task {slot.primary.state}")
                )
            elif self.slot(service, slot.primary, key in wanted):
                left_alone.append(slot)
        for number, node_id in self.take_slots(sorted(wanted - live.keys())):
            self.new(service, number, node_id, restarts=0)
        self.collect([t for t in tasks if t.desired == "shutdown"], service_exists=True)
        step = plan_rollout(
            service,
            left_alone,
            self.view.tasks,
            self.now,
            lambda key: self.task(service, key[0], key[1], restarts=0),
        )
        self.stop.extend(step.stop)
        self.create.extend(step.create)
        self.rollouts.extend(step.commands)
        if step.wake_at is not None:
            self.wake(step.wake_at)
        if not step.create and not step.stop and self._move_room > 0:
            move = plan_move(self.view, service, left_alone, self.now)
            if move.wake_at is not None:
                self.wake(move.wake_at)
            if move.task is not None:
                new = self.task(service, move.task.slot, move.to, move.task.restarts)
                self.create.append(dataclasses.replace(new, replaces=move.task.id))

    def take_slots(self, missing: list[SlotKey]) -> list[SlotKey]:
        """As many of the `missing` slots as this round still makes new tasks for."""
        if self.slots_left is None:
            return missing
        taken, self.slots_left = missing[: self.slots_left], max(0, self.slots_left - len(missing))
        return taken

    def wake(self, at: float) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    def slot(self, service: Service, task: Task, wanted: bool) -> bool:
        """Decide about a slot's running task; True when it is left as it is."""
        spec = service.spec
        node = self.view.nodes.get(task.node_id)
        if not wanted:
            if spec.mode == "replicated":
                self.stop.append(StopTask(task.id, "service scaled down"))
                return False
            problem = self.node_problem(node, spec)
            if problem:  # a global task lives and dies with its node's eligibility
                self.stop.append(StopTask(task.id, problem))
                return False
            # Left: a paused node, which keeps its task but gets no new one.
        if task.state == "pending":
            if not current(service, task):
                self.replace(service, task, "spec changed before it was placed", task.restarts)
                return False
            if task.replaces and task.slot and task.node_id and task.message:
                # A rebalancing copy that its node cannot take (placement said why): the
                # moved task stays, and the next move is planned afresh.
                self.stop.append(StopTask(task.id, f"move dropped: {task.message}"))
                return False
            self.pending.append(task)
        elif not task.terminal:
            problem = self.node_problem(node, spec)
            if problem and self.drained(service, task, node):
                return not self.move_off(service, task)
            if problem:
                self.replace(service, task, problem, task.restarts)
                return False
        elif wanted:
            self.restart(service, task)
        return True

    def drained(self, service: Service, task: Task, node: Node | None) -> bool:
        """Whether `task` serves on a node being drained and moves off start-first, within
        the service's budget, instead of being replaced stop-first."""
        spec = service.spec
        return (
            node is not None
            and node.status == "ready"
            and node.availability == "drain"
            and spec.mode == "replicated"
            and spec.job is None
            and spec.rebalance != "off"
            and task.spec_version == service.version
            and is_ready(task, spec)
            and not keeps_volumes(spec)
        )

    def move_off(self, service: Service, task: Task) -> bool:
        """Start a copy of `task` on another node if the budget allows; False: it waits."""
        if self._move_room <= 0:
            return False
        self._move_room -= 1
        new = self.task(service, task.slot, "", task.restarts)
        self.create.append(dataclasses.replace(new, replaces=task.id))
        return True

    def canary(self, service: Service, canary: Task, wanted: bool) -> None:
        """A canary beside its slot's task: placed while pending, else stopped when it must
        not go on. It is never replaced here: the rollout counts one that ended as failed and
        makes another for one that is gone."""
        if canary.state == "pending" and wanted:
            self.pending.append(canary)
            return
        why = (
            "service scaled down"
            if not wanted
            else f"canary {canary.state}"
            if canary.terminal
            else self.node_problem(self.view.nodes.get(canary.node_id), service.spec)
        )
        if why:
            self.stop.append(StopTask(canary.id, why))

    def why_extra(self, service: Service, primary: Task, task: Task) -> str:
        """Why a task of a slot that another task runs is stopped."""
        if task.canary:
            return f"canary of version {task.spec_version} removed: the service is at version {service.version}"
        if primary.replaces == task.id:
            left = self.node_problem(self.view.nodes.get(task.node_id), service.spec)
            node = self.view.nodes.get(primary.node_id)
            return left or f"moved to node {node.name if node else primary.node_id} (rebalanced)"
        if current(service, primary) and not current(service, task):
            return f"replaced by task {primary.id[:12]} of version {primary.spec_version}"
        return "another task runs this slot"

    def node_problem(self, node: Node | None, spec: ServiceSpec) -> str:
        """node_problem, once per node and set of constraints in a round."""
        if node is None:
            return node_problem(node, spec)
        key = (node.id, spec.constraints)
        problem = self._node_problems.get(key)
        if problem is None:
            problem = self._node_problems[key] = node_problem(node, spec)
        return problem

    def restart(self, service: Service, task: Task) -> None:
        """A task ended while told to run: replace it as its restart policy says, after backoff."""
        policy = service.spec.restart
        if policy.condition == "none" or (
            policy.condition == "on-failure" and task.state == "complete"
        ):
            return
        restarts = task.restarts
        if (
            policy.window
            and task.started_at
            and task.finished_at - task.started_at >= policy.window
        ):
            restarts = 0  # it ran longer than the window: earlier failures no longer count
        if policy.max_attempts and restarts >= policy.max_attempts:
            return
        deadline = task.finished_at + restart_backoff(policy, restarts)
        if self.now < deadline:
            self.wake(deadline)
            return
        self.replace(service, task, f"task {task.state}: restarted", restarts + 1)

    # -- changes ---------------------------------------------------------------------
    def replace(self, service: Service, task: Task, reason: str, restarts: int) -> None:
        self.stop.append(StopTask(task.id, reason))
        self.new(service, task.slot, task.node_id if task.slot == 0 else "", restarts)

    def new(self, service: Service, slot: int, node_id: str, restarts: int) -> None:
        self.create.append(self.task(service, slot, node_id, restarts))

    def task(self, service: Service, slot: int, node_id: str, restarts: int) -> Task:
        """A new pending task of the service's current spec."""
        spec = service.spec
        return Task(
            id=self.new_id(),
            service_id=service.id,
            service=service.name,
            slot=slot,
            spec_version=service.version,
            node_id=node_id,
            restarts=restarts,
            reserved=spec.resources.reservations,
            host_ports=self._host_ports,
            created_at=self.now,
            updated_at=self.now,
        )

    def collect(self, ended: list[Task], service_exists: bool) -> None:
        """Orphan tasks told to stop whose node is gone; forget ended tasks beyond the history."""
        history: defaultdict[SlotKey, list[Task]] = defaultdict(list)
        for task in ended:
            node = self.view.nodes.get(task.node_id)
            if task.desired == "running":  # only if its service vanished without stopping it
                self.stop.append(StopTask(task.id, "service removed"))
            elif not task.terminal and (node is None or node.status == "down"):
                self.stop.append(StopTask(task.id, "node is down"))
            elif task.terminal:
                history[task.slot_key].append(task)
        for key in sorted(history):
            old = sorted(history[key], key=lambda t: (t.finished_at, t.created_at, t.id))
            keep = TASK_HISTORY if service_exists else 0
            self.remove.extend(t.id for t in old[: max(0, len(old) - keep)])


def reconcile(
    view: StateView, now: float, new_id: Callable[[], str], max_new_slots: int | None = None
) -> Plan:
    """`max_new_slots` bounds the tasks made for slots that have none (the rest wait for a
    later round); replacements and rollout steps are never held back."""
    return _Planner(view, now, new_id, max_new_slots).plan()
