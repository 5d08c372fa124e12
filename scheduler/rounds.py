"""One scheduling round as a pure function: reconcile, place, and the one command to propose."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

from consensus.tasks import AssignTasks, Explanation
from consensus.updates import RecordRollout, RollbackService
from scheduler.placement import place
from scheduler.reconcile import reconcile
from scheduler.view import StateView

# New tasks per round: bounds one Raft entry; the commit wakes the next round for the rest.
MAX_NEW_TASKS = 10_000


@dataclass(frozen=True, slots=True)
class Round:
    command: AssignTasks  # falsy when there is nothing to change
    wake_at: Optional[float]  # when a restart backoff or rollout step is due, if nothing wakes us sooner
    # Rollout progress and automatic rollbacks, proposed after `command` (whose new tasks
    # they may name).
    rollouts: tuple[RecordRollout | RollbackService, ...] = ()


def schedule(view: StateView, now: float, seed: int | str, new_id: Callable[[], str],
             max_new_tasks: int = MAX_NEW_TASKS) -> Round:
    plan = reconcile(view, now, new_id, max_new_tasks)
    created = plan.create[:max_new_tasks]
    earlier = plan.pending
    result = place(view, [*earlier, *created], seed)
    why = {u.task_id: u.explanation for u in result.unplaceable}
    # An unchanged explanation is not news: proposing it again would wake us forever.
    explain = tuple(Explanation(t.id, why[t.id]) for t in earlier
                    if t.id in why and why[t.id] != t.message)
    create = tuple(dataclasses.replace(t, message=why.get(t.id, "")) for t in created)
    command = AssignTasks(
        at=now, stop=plan.stop, remove=plan.remove, create=create,
        assign=result.placements,
        explain=explain)
    return Round(command, plan.wake_at, plan.rollouts)
