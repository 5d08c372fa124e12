"""Rolling updates as a pure planner: which outdated tasks to replace now, and the progress
to record. Called by reconcile once per service and round; `now` and new tasks come in as
arguments, the Rollout record (consensus.rollout) carries everything between rounds.

A task is outdated when its spec differs from the service's in anything but the replica
count and the rollout policies (so scaling replaces nothing). Outdated slots are replaced
`parallelism` at a time: stop-first stops the old task in the same command that creates its
successor; start-first creates the successor beside it and stops the old task once the new
one is ready (running, and healthy when the spec checks health). A batch is done when each
of its tasks stayed ready for `monitor` seconds (Kubernetes' minReadySeconds) or failed;
the next batch starts `delay` seconds later. Failures beyond `max_failure_ratio` pause the
rollout, roll it back (one automatic rollback, never a rollback of a rollback) or are
ignored (`continue`). With `canary` N, an update's first batch is N canaries: tasks of the
new spec started beside the old tasks of N slots, which keep running (so the load balancer
shares the traffic in proportion to the task counts). The update then waits in its `canary`
phase until it is promoted (consensus.updates.PromoteService: by hand, or proposed here
`auto_promote` seconds after the canaries passed their monitor): each canary then takes its
slot (the old task stops) and counts as replaced, and the rest go on as above. Until then
only the canaries still there count: one lost (its node went down) is started again, one
that failed is not. A rollback leaves the old tasks as they are and stops the canaries,
which are no longer current.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from consensus.rollout import Rollout, RolloutState, Watch
from consensus.services import ServiceSpec, UpdateConfig
from consensus.tasks import Service, StopTask, Task
from consensus.updates import PromoteService, RecordRollout, RollbackService

SlotKey = tuple[int, str]
# What a rollout step proposes after its tasks.
RolloutCommand = RecordRollout | RollbackService | PromoteService


def task_spec(spec: ServiceSpec) -> ServiceSpec:
    """What of a spec its tasks are made from: all but replicas and the rollout, autoscaling
    and rebalancing policies."""
    return dataclasses.replace(
        spec,
        replicas=0,
        update=UpdateConfig(),
        rollback=UpdateConfig(),
        autoscale=None,
        rebalance="manual",
        max_unavailable=1,
    )


def same_tasks(a: ServiceSpec | None, b: ServiceSpec | None) -> bool:
    return a is not None and b is not None and task_spec(a) == task_spec(b)


def is_ready(task: Task, spec: ServiceSpec) -> bool:
    """Running, and healthy when the spec checks health: fit to take traffic."""
    if task.state != "running" or task.desired != "running":
        return False
    return task.health == "healthy" or (spec.health.kind == "none" and task.health == "none")


def has_failed(task: Task) -> bool:
    """Ended or unhealthy while it was told to run."""
    return task.desired == "running" and (task.terminal or task.health == "unhealthy")


@dataclass(frozen=True, slots=True)
class SlotTasks:
    """The tasks told to run in one slot, sorted out: `primary` runs it; `handover` is an
    older task that keeps serving until `primary` is ready (start-first); `extra` are to stop
    (with a start-first successor ready, the task it replaces is one of them); `beside` is a
    canary of the current spec running next to `primary` until the update is promoted."""

    key: SlotKey
    primary: Task
    handover: Task | None = None
    extra: tuple[Task, ...] = ()
    beside: Task | None = None


def sort_slot(
    key: SlotKey, live: list[Task], current: Callable[[Task], bool], ready: Callable[[Task], bool]
) -> SlotTasks:
    if len(live) == 1:  # the common case, every round for every slot: nothing to sort out
        return SlotTasks(key, live[0])
    canaries = [t for t in live if t.canary]
    if canaries and len(canaries) < len(live):
        # A canary never runs the slot: the current one stays beside, an abandoned one stops.
        slot = sort_slot(key, [t for t in live if not t.canary], current, ready)
        fresh = sorted((t for t in canaries if current(t)), key=lambda t: (t.created_at, t.id))
        beside = fresh[-1] if fresh else None
        return dataclasses.replace(
            slot, beside=beside, extra=(*slot.extra, *(t for t in canaries if t is not beside))
        )
    by_age = sorted(live, key=lambda t: (t.created_at, t.id))
    fresh = [t for t in by_age if current(t)]
    primary = (fresh or by_age)[-1]
    handover = None
    if current(primary) and not ready(primary):
        # Never take a serving task down before its successor (or, moving, its copy on
        # another node) is ready.
        serving = [
            t
            for t in by_age
            if (not current(t) or t.id == primary.replaces)
            and not t.terminal
            and t.state != "pending"
        ]
        handover = serving[-1] if serving else None
    extra = tuple(t for t in by_age if t is not primary and t is not handover)
    return SlotTasks(key, primary, handover, extra)


@dataclass(frozen=True, slots=True)
class RolloutStep:
    stop: tuple[StopTask, ...] = ()
    create: tuple[Task, ...] = ()
    commands: tuple[RolloutCommand, ...] = ()  # to propose after the tasks
    wake_at: float | None = None


class _Step:
    """One service's rollout for one round (the working state of `plan_rollout`)."""

    def __init__(self, service: Service, now: float) -> None:
        self.service, self.now = service, now
        self.stop: list[StopTask] = []
        self.create: list[Task] = []
        self.wake_at: float | None = None

    def wake(self, at: float) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    def result(
        self, record: Rollout | None, then: RollbackService | PromoteService | None = None
    ) -> RolloutStep:
        commands: list[RolloutCommand] = []
        old = self.service.rollout
        if record is not None and record != old:
            commands.append(
                RecordRollout(self.service.name, dataclasses.replace(record, updated_at=self.now))
            )
        if then is not None:
            commands.append(then)
        return RolloutStep(tuple(self.stop), tuple(self.create), tuple(commands), self.wake_at)


def _begin(service: Service, outdated: bool) -> Rollout | None:
    """The rollout the current version continues or starts; None when there is none."""
    old = service.rollout
    if old is not None and old.service_id == service.id:
        if old.version == service.version:
            return old
        if same_tasks(service.spec_at(old.version), service.spec):
            # Only the replica count or a policy changed: the same rollout goes on (a
            # paused one stays paused: scaling does not retry a failed update).
            return dataclasses.replace(old, version=service.version)
    previous = service.history[-1].version if service.history else 0
    if outdated:
        return Rollout(
            service.id,
            service.version,
            previous,
            config=service.spec.update,
            started_at=service.updated_at,
            message=f"updating to version {service.version}",
        )
    if old is not None and old.service_id == service.id and old.active:
        # Changed back before anything was replaced: the older rollout is over.
        return Rollout(
            service.id,
            service.version,
            previous,
            state="completed",
            config=service.spec.update,
            started_at=service.updated_at,
            completed_at=service.updated_at,
            message="nothing to replace",
        )
    return None


def plan_rollout(
    service: Service,
    slots: list[SlotTasks],
    tasks_by_id: Mapping[str, Task],
    now: float,
    new_task: Callable[[SlotKey], Task],
) -> RolloutStep:
    """This round's part of `service`'s rollout. `slots` are the wanted slots whose primary
    reconcile leaves alone; `new_task(key)` builds a pending task of the current spec."""
    step = _Step(service, now)
    # Pending and ended tasks are reconcile's: it replaces them by the current spec itself.
    outdated = [
        s
        for s in slots
        if not current(service, s.primary)
        and s.primary.state != "pending"
        and not s.primary.terminal
    ]
    record = _begin(service, bool(outdated))
    if record is None or not record.active:
        return step.result(record)
    return _advance(step, record, outdated, tasks_by_id, new_task)


def current(service: Service, task: Task) -> bool:
    """Whether `task` was made from what the service's current spec would make."""
    return task.spec_version == service.version or same_tasks(
        service.spec_at(task.spec_version), service.spec
    )


def _advance(
    step: _Step,
    record: Rollout,
    outdated: list[SlotTasks],
    tasks_by_id: Mapping[str, Task],
    new_task: Callable[[SlotKey], Task],
) -> RolloutStep:
    service, now, config = step.service, step.now, record.config
    batch: list[Watch] = []
    updated, failed, last_error = record.updated, record.failed, ""
    for watch in record.batch:
        task = tasks_by_id.get(watch.task_id)
        if task is None or task.desired == "shutdown":
            continue  # removed or stopped for another reason (scaled down, node lost)
        if has_failed(task):
            failed += 1
            last_error = task.error or task.message or f"task {task.state}"
        elif is_ready(task, service.spec):
            ready_at = watch.ready_at or now
            if now >= ready_at + config.monitor:
                updated += 1
            else:
                batch.append(Watch(task.id, ready_at))
                step.wake(ready_at + config.monitor)
        else:  # not (or no longer) ready: its monitor period starts again when it is
            batch.append(Watch(task.id))
    batch_done_at = now if record.batch and not batch else record.batch_done_at
    # A slot with a canary beside its old task is counted by the canary (updated or in the batch).
    to_replace = [s for s in outdated if s.beside is None]
    canary = config.canary if record.kind == "update" and not record.promoted else 0
    missing = 0  # canaries to start: one lost since it passed its monitor is made again
    if canary:
        alive = sum(1 for s in outdated if s.beside is not None and not s.beside.terminal)
        updated = max(0, alive - len(batch))  # until the promote, only canaries still there count
        missing = min(canary - alive - failed, len(to_replace))
    total = updated + failed + len(batch) + len(to_replace)
    progress = dataclasses.replace(
        record,
        batch=tuple(batch),
        batch_done_at=batch_done_at,
        updated=updated,
        failed=failed,
        remaining=len(to_replace),
    )

    if failed and failed / total > config.max_failure_ratio and config.failure_action != "continue":
        why = f"{failed} of {total} replaced tasks failed" + (
            f" (last: {last_error})" if last_error else ""
        )
        if config.failure_action == "rollback" and record.kind == "update":
            return step.result(
                dataclasses.replace(progress, message=f"{why}: rolling back"),
                RollbackService(
                    service.name,
                    now,
                    expected_version=service.version,
                    reason=f"update to version {service.version} failed: {why}",
                ),
            )
        return step.result(
            dataclasses.replace(progress, state="paused", message=f"{record.kind} paused: {why}")
        )

    if canary and not batch and outdated and missing <= 0:
        message, due = _canary_wait(
            step, record.config, batch_done_at, updated, failed, len(outdated)
        )
        return step.result(
            dataclasses.replace(progress, state="canary", message=message),
            PromoteService(service.name, now) if due else None,
        )
    if not batch and to_replace:
        start_at = batch_done_at + config.delay if batch_done_at else now
        if now < start_at:
            step.wake(start_at)
        else:
            chosen = to_replace[: missing if canary else config.parallelism or len(to_replace)]
            for slot in chosen:
                task = new_task(slot.key)
                if canary:  # beside the old task, which keeps running and serving
                    task = dataclasses.replace(task, canary=True)
                elif config.order == "stop-first":
                    step.stop.append(
                        StopTask(slot.primary.id, f"updating to version {service.version}")
                    )
                step.create.append(task)
                batch.append(Watch(task.id))
            progress = dataclasses.replace(
                progress, batch=tuple(batch), remaining=len(to_replace) - len(chosen)
            )
    if not batch and not outdated:
        done: RolloutState = "rolled_back" if record.kind == "rollback" else "completed"
        note = f", {failed} failed" if failed else ""
        return step.result(
            dataclasses.replace(
                progress,
                state=done,
                completed_at=now,
                message=f"{record.kind} to version {service.version} done: {updated} tasks replaced{note}",
            )
        )
    return step.result(
        dataclasses.replace(
            progress, state=record.state if record.state != "canary" else "updating"
        )
    )


def _canary_wait(
    step: _Step, config: UpdateConfig, done_at: float, updated: int, failed: int, old: int
) -> tuple[str, bool]:
    """The canaries are done (since `done_at`): the message of the `canary` phase, and
    whether `auto_promote` has passed since, so the promote is due."""
    service = step.service
    due = False
    if config.auto_promote:
        due = step.now >= done_at + config.auto_promote
        if not due:
            step.wake(done_at + config.auto_promote)
    by_itself = (
        f"; promoted by itself after {config.auto_promote:g}s" if config.auto_promote else ""
    )
    lost = f" ({failed} failed)" if failed else ""
    return (
        f"canary: {updated} tasks of version {service.version} run beside {old} "
        f"of the old version{lost}; `shoal service promote {service.name}` "
        f"replaces the old ones, `shoal service rollback {service.name}` removes "
        f"the canaries{by_itself}"
    ), due
