"""One scheduling round as a pure function: reconcile, place, and the one command to propose."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from consensus.crons import FireCron
from consensus.job_runs import EndJob, ExpireJob
from consensus.tasks import Assignment, AssignTasks, Explanation, Task
from scheduler.crons import plan_crons
from scheduler.placement import place
from scheduler.reconcile import reconcile
from scheduler.rollout import RolloutCommand
from scheduler.view import StateView

# New tasks per round; the commit wakes the next round for the rest. Planning a round looks
# at every task, so rounds are few and large...
MAX_NEW_TASKS = 10_000
# ...and proposed in parts: every node applies an entry on its Raft thread, and a leader busy
# applying one sends no heartbeats. A 10,000-task entry kept it quiet past its followers'
# election timeout on a loaded machine (elections in most 100,000-task benchmark runs).
MAX_ENTRY_TASKS = 2_500
# Tasks waiting for a node, at most, in the whole cluster: every node holds every task, and
# 100,000 that could never be placed took 100-150 MB on each and stalled nodes. Slots past
# it get no task record until others are placed; the service's status shows them missing.
MAX_PENDING = 10_000


@dataclass(frozen=True, slots=True)
class Round:
    command: AssignTasks  # falsy when there is nothing to change
    wake_at: (
        float | None
    )  # when a restart backoff or rollout step is due, if nothing wakes us sooner
    # Rollout progress and automatic rollbacks, proposed after `command` (whose new tasks
    # they may name).
    rollouts: tuple[RolloutCommand, ...] = ()
    # Jobs that finished or outlived their time to live, and cron runs due, proposed last.
    jobs: tuple[EndJob | ExpireJob | FireCron, ...] = ()


def schedule(
    view: StateView,
    now: float,
    seed: int | str,
    new_id: Callable[[], str],
    max_new_tasks: int = MAX_NEW_TASKS,
    max_pending: int = MAX_PENDING,
) -> Round:
    plan = reconcile(view, now, new_id, max_new_tasks)
    created = plan.create[:max_new_tasks]
    earlier = plan.pending
    result = place(view, [*earlier, *created], seed)
    why = {u.task_id: u.explanation for u in result.unplaceable}
    room = max_pending - sum(t.id in why for t in earlier)
    waiting = [t.id for t in created if t.id in why]
    if len(waiting) > room:
        dropped = set(waiting[max(room, 0) :])
        created = tuple(t for t in created if t.id not in dropped)
    # An unchanged explanation is not news: proposing it again would wake us forever.
    explain = tuple(
        Explanation(t.id, why[t.id]) for t in earlier if t.id in why and why[t.id] != t.message
    )
    create = tuple(dataclasses.replace(t, message=why.get(t.id, "")) for t in created)
    command = AssignTasks(
        at=now,
        stop=plan.stop,
        remove=plan.remove,
        create=create,
        assign=result.placements,
        explain=explain,
    )
    active = {s.cron for s in view.services.values() if s.cron and s.job_end is None}
    fires, cron_wake = plan_crons(dict(view.crons), active, now, new_id)
    wake_at = min((t for t in (plan.wake_at, cron_wake) if t is not None), default=None)
    return Round(command, wake_at, plan.rollouts, (*plan.jobs, *fires))


def entries(cmd: AssignTasks, max_tasks: int = MAX_ENTRY_TASKS) -> list[AssignTasks]:
    """`cmd` as consecutive commands of at most `max_tasks` tasks each (a new task and its
    assignment count once) that, applied in order, do what `cmd` does: stops and removals
    go first, explanations last, and each new task travels with its assignment."""
    created = {task.id for task in cmd.create}
    if len(cmd.create) + sum(a.task_id not in created for a in cmd.assign) <= max_tasks:
        return [cmd]
    placed = {a.task_id: a for a in cmd.assign if a.task_id in created}
    units: list[tuple[tuple[Task, ...], tuple[Assignment, ...]]] = [
        ((task,), (placed[task.id],) if task.id in placed else ()) for task in cmd.create
    ]
    units += [((), (a,)) for a in cmd.assign if a.task_id not in created]
    parts = []
    for start in range(0, len(units), max_tasks):
        chunk = units[start : start + max_tasks]
        parts.append(
            AssignTasks(
                at=cmd.at,
                create=tuple(t for made, _ in chunk for t in made),
                assign=tuple(a for _, given in chunk for a in given),
            )
        )
    parts[0] = dataclasses.replace(parts[0], stop=cmd.stop, remove=cmd.remove)
    parts[-1] = dataclasses.replace(parts[-1], explain=cmd.explain)
    return parts
