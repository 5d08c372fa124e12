"""Services and their tasks in the replicated state, the commands that change them, and how
`apply` handles each.

A task is one scheduled instance of a service: created `pending` by the scheduler, bound to a
node (`assigned`), then driven by that node's agent, which reports what it observes
(`preparing` ... `running` ... a terminal state). The scheduler only ever asks; `apply`
re-checks every placement against the state at commit time (Nomad's plan/apply split), so a
plan made from a stale read can never over-commit a node or run a slot twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from consensus.autoscale import AutoscaleRecord
from consensus.codec import command
from consensus.fit import NodeRoom, TaskFit, rooms_of
from consensus.jobs import JobEnd
from consensus.model import Node, Resources
from consensus.nodes import nodes
from consensus.rollout import Rollout
from consensus.services import (
    MAX_CLUSTER_REPLICAS,
    MAX_SERVICES,
    SPEC_HISTORY,
    PortSpec,
    ServiceSpec,
    spec_errors,
)
from consensus.state import ClusterState, Result, handles, register_table
from consensus.store import StateVersion, register_index

SERVICES = "services"
TASKS = "tasks"

TaskState = Literal[
    "pending",
    "assigned",
    "preparing",
    "starting",
    "running",
    "complete",
    "failed",
    "shutdown",
    "rejected",
    "orphaned",
]
# What a node's agent may report; `pending`, `assigned` and `orphaned` are the scheduler's.
AgentState = Literal[
    "preparing", "starting", "running", "complete", "failed", "shutdown", "rejected"
]
DesiredState = Literal["running", "shutdown"]
Health = Literal["none", "starting", "healthy", "unhealthy"]
TERMINAL: frozenset[str] = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned"})
# Observed states only move forward; every terminal state ranks last (it is final).
_RANK = {s: min(i, 5) for i, s in enumerate(get_args(TaskState))}


@dataclass(frozen=True, slots=True)
class PortBinding:
    """Where the agent made a task's `target` port reachable: `Endpoint.address:host_port`."""

    target: int
    host_port: int
    protocol: Literal["tcp", "udp"] = "tcp"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How to reach a running task; the agent fills it in, the load balancer and DNS read it."""

    address: str = ""
    ports: tuple[PortBinding, ...] = ()
    # Overlay network name -> the task's address on it.
    networks: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    service_id: str
    service: str
    # Replicated services number their tasks 1..replicas; a global task has slot 0 and is
    # bound to `node_id` from birth. A replacement keeps its predecessor's slot.
    slot: int
    spec_version: int
    node_id: str = ""
    desired: DesiredState = "running"
    state: TaskState = "pending"
    message: str = ""  # why it is pending, or what happened last
    error: str = ""
    exit_code: int | None = None
    health: Health = "none"
    restarts: int = 0  # restarts of this slot after the task ended, for backoff and max_attempts
    # Copied from the spec at creation, so re-checks and node views need no spec lookups.
    reserved: Resources = field(default_factory=Resources)
    host_ports: tuple[PortSpec, ...] = ()
    endpoint: Endpoint = field(default_factory=Endpoint)
    runtime_id: str = ""  # the runtime driver's handle: container id or process id
    # A move (rebalancing): the task of this slot that keeps running until this one is ready.
    replaces: str = ""
    # A canary of an update: it runs beside its slot's task, which it neither replaces nor
    # counts as, until the update is promoted (then the flag is cleared and it takes the slot).
    canary: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def holds_resources(self) -> bool:
        """Bound to a node and not known to have ended there."""
        return self.state != "pending" and self.state not in TERMINAL

    @property
    def slot_key(self) -> tuple[int, str]:
        return (self.slot, self.node_id if self.slot == 0 else "")


@dataclass(frozen=True, slots=True)
class SpecVersion:
    version: int
    spec: ServiceSpec


@dataclass(frozen=True, slots=True)
class Service:
    id: str
    spec: ServiceSpec
    version: int = 1
    created_at: float = 0.0
    updated_at: float = 0.0
    history: tuple[SpecVersion, ...] = ()  # earlier specs, oldest first, for rollback
    rollout: Rollout | None = None  # the latest rollout, possibly of an earlier version
    autoscaled: AutoscaleRecord | None = None  # the autoscaler's last change
    job_end: JobEnd | None = None  # set once when a job finishes
    cron: str = ""  # the cron job that started this job, if one did
    rebalance_requested_at: float = 0.0  # the last `shoal service rebalance`

    @property
    def name(self) -> str:
        return self.spec.name

    def spec_at(self, version: int) -> ServiceSpec | None:
        if version == self.version:
            return self.spec
        return next((h.spec for h in self.history if h.version == version), None)


register_table(SERVICES, Service)
register_table(TASKS, Task)
register_index(TASKS, "node_id")
register_index(TASKS, "service")


def services(state: ClusterState) -> dict[str, Service]:
    """Services by name."""
    return state.table(SERVICES)


def tasks(state: ClusterState) -> dict[str, Task]:
    """Tasks by id."""
    return state.table(TASKS)


def spec_of(by_name: Mapping[str, Service], task: Task) -> ServiceSpec | None:
    """The spec version `task` was made from, or None when that version or its service is
    gone (a service created later under the same name is another service)."""
    service = by_name.get(task.service)
    if service is None or service.id != task.service_id:
        return None
    return service.spec_at(task.spec_version)


def tasks_on(view: StateVersion, node_id: str) -> Mapping[str, Task]:
    """The tasks bound to node `node_id`, by id: an index, as cheap as their number."""
    return view.indexed(TASKS, "node_id", node_id)


def tasks_of(view: StateVersion, service: str) -> list[Task]:
    """A service's tasks (by name, including those of a deleted one), by slot then age."""
    return sorted(
        view.indexed(TASKS, "service", service).values(),
        key=lambda t: (t.slot, t.node_id, t.created_at, t.id),
    )


def tasks_of_service(view: StateVersion, service: Service) -> list[Task]:
    """The tasks of `service` itself (not of an earlier service of its name)."""
    return [
        t
        for t in view.indexed(TASKS, "service", service.name).values()
        if t.service_id == service.id
    ]


# -- commands ----------------------------------------------------------------------------


@command("service.create")
@dataclass(frozen=True, slots=True)
class CreateService:
    id: str
    spec: ServiceSpec
    at: float


@command("service.update")
@dataclass(frozen=True, slots=True)
class UpdateService:
    """Replace a service's spec. With `expected_version` set, fail (409) if the service
    changed since it was read, so read-modify-write (scale, PATCH) never loses an update."""

    spec: ServiceSpec
    at: float
    expected_version: int = 0


@command("service.delete")
@dataclass(frozen=True, slots=True)
class DeleteService:
    name: str
    at: float


@dataclass(frozen=True, slots=True)
class Assignment:
    task_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class Explanation:
    task_id: str
    message: str


@dataclass(frozen=True, slots=True)
class StopTask:
    task_id: str
    reason: str


@command("tasks.assign")
@dataclass(frozen=True, slots=True)
class AssignTasks:
    """One scheduling round, applied in order: stop, remove, create, assign, explain.
    Each item stands or falls alone; the Result value lists the rejected ones."""

    at: float
    stop: tuple[StopTask, ...] = ()
    remove: tuple[str, ...] = ()
    create: tuple[Task, ...] = ()
    assign: tuple[Assignment, ...] = ()
    explain: tuple[Explanation, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.stop or self.remove or self.create or self.assign or self.explain)


@dataclass(frozen=True, slots=True)
class TaskReport:
    """What an agent observed of one task. Fields left None keep their current value."""

    task_id: str
    state: AgentState
    message: str = ""
    error: str = ""
    exit_code: int | None = None
    health: Health | None = None
    endpoint: Endpoint | None = None
    runtime_id: str = ""


# The fields of a report that say what they say only when set: one left empty (None or "")
# keeps the value it had. Every reader of reports reads them so: `apply`, an agent merging
# two reports of one state into one, the routing mesh folding them into what it announces.
REPORTED = ("message", "error", "exit_code", "health", "endpoint", "runtime_id")


def reported(
    report: TaskReport, before: object, fields: tuple[str, ...] = REPORTED
) -> dict[str, Any]:
    """`fields` as `report` sets them over `before` (a task, an older report, an observation)."""
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(report, name)
        out[name] = getattr(before, name) if value is None or value == "" else value
    return out


def merge_reports(older: TaskReport, newer: TaskReport) -> TaskReport:
    """Two reports of one task in one state as one, which `apply` reads as it reads both."""
    assert older.task_id == newer.task_id and older.state == newer.state
    return TaskReport(newer.task_id, newer.state, **reported(newer, older))


@command("tasks.report")
@dataclass(frozen=True, slots=True)
class ReportTaskStatus:
    node_id: str
    at: float
    reports: tuple[TaskReport, ...] = ()


# -- service handlers ----------------------------------------------------------------------

# Checks of a spec against other tables (do the secrets it names exist?), registered by
# the modules that own those tables.
SPEC_CHECKS: list[Callable[[ClusterState, ServiceSpec], Result | None]] = []


# Called with a service's name after it is created, updated or deleted, by the modules whose
# tables follow services (overlay networks give each service a VIP on the networks it joins).
SERVICE_CHANGED: list[Callable[[ClusterState, str], None]] = []


def _service_changed(state: ClusterState, name: str) -> None:
    for hook in SERVICE_CHANGED:
        hook(state, name)


def spec_problem(state: ClusterState, spec: ServiceSpec) -> Result | None:
    """Why `spec` cannot run in this state (a bad field, a secret that is not there)."""
    errors = spec_errors(spec)
    if errors:
        return Result.fail(str(errors[0]), 400)
    return _quota_problem(state, spec) or next(
        filter(None, (check(state, spec) for check in SPEC_CHECKS)), None
    )


def _quota_problem(state: ClusterState, spec: ServiceSpec) -> Result | None:
    table = services(state)
    if spec.name not in table and len(table) >= MAX_SERVICES:
        return Result.fail(
            f"name: the cluster holds {MAX_SERVICES} services, its quota; remove one first", 422
        )
    if spec.mode != "replicated":
        return None
    others = sum(
        s.spec.replicas
        for s in table.values()
        if s.name != spec.name and s.spec.mode == "replicated"
    )
    if others + spec.replicas > MAX_CLUSTER_REPLICAS:
        return Result.fail(
            f"replicas: the other services run {others} replicas; with "
            f"{spec.replicas} more the cluster would pass its quota of "
            f"{MAX_CLUSTER_REPLICAS}",
            422,
        )
    return None


def _ingress_conflict(state: ClusterState, spec: ServiceSpec) -> Result | None:
    """Ingress ports listen on every node, so two services cannot publish the same one."""
    mine = {(p.published, p.protocol) for p in spec.ports if p.mode == "ingress" and p.published}
    for other in services(state).values():
        if other.name == spec.name:
            continue
        for p in other.spec.ports:
            if p.mode == "ingress" and (p.published, p.protocol) in mine:
                return Result.fail(
                    f"ports: {p.published}/{p.protocol} is already published by "
                    f"service {other.name!r}",
                    409,
                )
    return None


@handles(CreateService)
def _create_service(state: ClusterState, cmd: CreateService) -> Result:
    return add_service(state, Service(cmd.id, cmd.spec, 1, cmd.at, cmd.at))


def add_service(state: ClusterState, service: Service) -> Result:
    """Add a new service (or job), checked against the state."""
    problem = spec_problem(state, service.spec) or _ingress_conflict(state, service.spec)
    if problem:
        return problem
    table = services(state)
    if service.name in table:
        return Result.fail(f"name: service {service.name!r} already exists", 409)
    if any(s.id == service.id for s in table.values()):
        return Result.fail(f"id: service id {service.id!r} is taken", 409)
    table[service.name] = service
    _service_changed(state, service.name)
    return Result(True, value={"id": service.id, "version": 1})


@handles(UpdateService)
def _update_service(state: ClusterState, cmd: UpdateService) -> Result:
    return update_spec(state, cmd.spec, cmd.at, cmd.expected_version)


def update_spec(
    state: ClusterState,
    spec: ServiceSpec,
    at: float,
    expected_version: int = 0,
    rollout: Rollout | None = None,
) -> Result:
    """Make `spec` the service's new version (the old one joins the history); a rollback
    passes the `rollout` that starts with it."""
    old = services(state).get(spec.name)
    if old is None:
        return Result.fail(f"no such service {spec.name!r}", 404)
    if expected_version and expected_version != old.version:
        return Result.fail(
            f"service {old.name!r} is at version {old.version}, not "
            f"{expected_version}: read it again and retry",
            409,
        )
    if spec == old.spec:
        return Result(True, value={"id": old.id, "version": old.version, "changed": False})
    if old.spec.job is not None or spec.job is not None:
        kind = "a job" if old.spec.job is not None else "a service"
        return Result.fail(
            f"{spec.name!r} is {kind}: a job's spec cannot change, and a service "
            "cannot become a job; remove it and run it again",
            409,
        )
    problem = spec_problem(state, spec) or _ingress_conflict(state, spec)
    if problem:
        return problem
    history = (old.history + (SpecVersion(old.version, old.spec),))[-SPEC_HISTORY:]
    new = dataclasses.replace(
        old,
        spec=spec,
        version=old.version + 1,
        updated_at=at,
        history=history,
        rollout=rollout or old.rollout,
    )
    services(state)[new.name] = new
    _service_changed(state, new.name)
    return Result(True, value={"id": new.id, "version": new.version, "changed": True})


def stopped(task: Task, reason: str, at: float, node: Node | None) -> Task:
    """`task` told to shut down. A task that never reached a node is over at once; one on a
    node that is down or gone is orphaned (its agent stops it if the node comes back)."""
    state = task.state
    if state == "pending":
        state = "shutdown"
    elif not task.terminal and (node is None or node.status == "down"):
        state = "orphaned"
    ended = state != task.state
    if task.desired == "shutdown" and not ended:
        return task
    return dataclasses.replace(
        task,
        desired="shutdown",
        state=state,
        message=reason,
        updated_at=at,
        finished_at=at if ended else task.finished_at,
    )


@handles(DeleteService)
def _delete_service(state: ClusterState, cmd: DeleteService) -> Result:
    service = services(state).get(cmd.name)
    if service is None:
        return Result.fail(f"no such service {cmd.name!r}", 404)
    remove_service(state, service, "service removed", cmd.at)
    return Result(True, value={"id": service.id})


def remove_service(state: ClusterState, service: Service, reason: str, at: float) -> None:
    """Forget `service` and tell its tasks to shut down (the scheduler forgets them after)."""
    del services(state)[service.name]
    table, node_table = tasks(state), nodes(state)
    for task in list(table.values()):
        if task.service_id == service.id:
            table[task.id] = stopped(task, reason, at, node_table.get(task.node_id))
    _service_changed(state, service.name)


# -- task handlers -------------------------------------------------------------------------


def placement_problem(
    room: NodeRoom | None,
    task: Task,
    spec: ServiceSpec | None,
    fits: dict[tuple[object, ...], TaskFit],
) -> str:
    """Why `task` cannot be placed on the node of `room` now, or "" when it can. `fits`
    caches the checks per kind of task: a round assigns many identical ones."""
    if room is None:
        return "node is gone"
    if spec is None:
        return f"spec version {task.spec_version} of service {task.service!r} is gone"
    key = (task.service_id, task.spec_version, task.reserved, task.host_ports)
    fit = fits.get(key)
    if fit is None:
        fit = fits[key] = TaskFit(task, spec)
    return fit.problem(room)


@handles(AssignTasks)
def _assign(state: ClusterState, cmd: AssignTasks) -> Result:
    table, node_table, by_name = tasks(state), nodes(state), services(state)
    rejected: list[list[str]] = []
    counts = {"stopped": 0, "removed": 0, "created": 0, "assigned": 0, "explained": 0}

    for stop in cmd.stop:
        task = table.get(stop.task_id)
        if task is None:
            rejected.append([stop.task_id, "no such task"])
            continue
        table[task.id] = stopped(task, stop.reason, cmd.at, node_table.get(task.node_id))
        counts["stopped"] += 1
    for task_id in cmd.remove:
        task = table.get(task_id)
        if task is None or task.desired != "shutdown" or not task.terminal:
            rejected.append([task_id, "only ended tasks told to shut down can be removed"])
            continue
        del table[task_id]
        counts["removed"] += 1

    # The newest spec version told to run in each slot. A start-first update runs a newer
    # task beside the old one until it is ready; never two tasks of one version in a slot.
    # Only the services that get new tasks are looked at: every node applies this on its Raft
    # thread, and a pass building a key for each of 100k tasks takes longer than an election
    # timeout on a loaded machine.
    # A move runs a second task of the same version in a slot, beside the one it replaces.
    # A canary runs beside its slot's task as well: canaries are counted apart.
    creating = {task.service_id for task in cmd.create}
    occupied: dict[tuple[str, tuple[int, str], bool], int] = {}
    in_slot: dict[tuple[str, tuple[int, str], bool], int] = {}
    for t in table.values():
        if t.service_id in creating and t.desired == "running":
            key = (t.service_id, t.slot_key, t.canary)
            occupied[key] = max(occupied.get(key, 0), t.spec_version)
            in_slot[key] = in_slot.get(key, 0) + 1
    for task in cmd.create:
        service = by_name.get(task.service)
        key = (task.service_id, task.slot_key, task.canary)
        reason = (
            "task id is taken"
            if task.id in table
            else "service is gone"
            if service is None or service.id != task.service_id
            else "a new task must be pending with desired state running"
            if task.state != "pending" or task.desired != "running"
            else _move_problem(table, task, in_slot.get(key, 0))
            if task.replaces
            else f"slot {task.slot_key} already has a task"
            if occupied.get(key, 0) >= task.spec_version
            else ""
        )
        if reason:
            rejected.append([task.id, reason])
            continue
        table[task.id] = task
        occupied[key] = task.spec_version
        in_slot[key] = in_slot.get(key, 0) + 1
        counts["created"] += 1

    rooms = (
        rooms_of(node_table, table.values(), {a.node_id for a in cmd.assign}) if cmd.assign else {}
    )
    fits: dict[tuple[object, ...], TaskFit] = {}
    for assignment in cmd.assign:
        task = table.get(assignment.task_id)
        if task is None or task.state != "pending" or task.desired != "running":
            rejected.append([assignment.task_id, "no pending task to assign"])
            continue
        spec = spec_of(by_name, task)
        problem = (
            "a global task runs only on its own node"
            if task.slot == 0 and task.node_id != assignment.node_id
            else f"a moved task's copy goes only to node {task.node_id}"
            if task.node_id and task.node_id != assignment.node_id
            else placement_problem(rooms.get(assignment.node_id), task, spec, fits)
        )
        if problem:
            rejected.append([task.id, problem])
            table[task.id] = dataclasses.replace(
                task, message=f"placement rejected: {problem}", updated_at=cmd.at
            )
            continue
        task = dataclasses.replace(
            task, node_id=assignment.node_id, state="assigned", message="", updated_at=cmd.at
        )
        table[task.id] = task
        rooms[task.node_id].add(task)
        counts["assigned"] += 1

    for explanation in cmd.explain:
        task = table.get(explanation.task_id)
        if task is None or task.state != "pending":
            rejected.append([explanation.task_id, "no pending task to explain"])
            continue
        table[task.id] = dataclasses.replace(task, message=explanation.message, updated_at=cmd.at)
        counts["explained"] += 1
    return Result(True, value={**counts, "rejected": rejected})


def _move_problem(table: dict[str, Task], task: Task, running_in_slot: int) -> str:
    """Why `task` cannot move the slot's task it names to another node, or "" when it can."""
    old = table.get(task.replaces)
    if old is None or old.service_id != task.service_id or old.slot_key != task.slot_key:
        return f"task {task.replaces} to move is not in slot {task.slot_key}"
    if old.desired != "running" or old.state != "running" or old.spec_version != task.spec_version:
        return f"task {task.replaces} to move is not running the current spec"
    if running_in_slot != 1:
        return f"slot {task.slot_key} is already changing"
    return ""


def _report_problem(task: Task | None, node_id: str, report: TaskReport) -> str:
    if task is None:
        return "no such task"
    if task.node_id != node_id or task.state == "pending":
        return f"task is not assigned to node {node_id}"
    if _RANK[report.state] < _RANK[task.state] or (task.terminal and report.state != task.state):
        return f"stale report: task is already {task.state}"
    return ""


@handles(ReportTaskStatus)
def _report(state: ClusterState, cmd: ReportTaskStatus) -> Result:
    table = tasks(state)
    rejected: list[list[str]] = []
    applied = 0
    for report in cmd.reports:
        task = table.get(report.task_id)
        problem = _report_problem(task, cmd.node_id, report)
        if problem:
            rejected.append([report.task_id, problem])
            continue
        assert task is not None
        changed = report.state != task.state
        ended = changed and report.state in TERMINAL
        fields = reported(report, task)
        if changed and not report.message:  # the old state's message says nothing of the new
            fields["message"] = ""
        table[task.id] = dataclasses.replace(
            task,
            state=report.state,
            **fields,
            updated_at=cmd.at if changed else task.updated_at,
            started_at=cmd.at
            if report.state == "running" and not task.started_at
            else task.started_at,
            finished_at=cmd.at if ended else task.finished_at,
        )
        applied += 1
    return Result(True, value={"applied": applied, "rejected": rejected})
