"""Pure placement and reconciliation, and the leader-only loop that runs them.

    view = StateView.capture(state)                  # a consistent read
    rnd = schedule(view, now, seed, new_id)          # reconcile + place -> one AssignTasks
    SchedulerLoop(read_state=..., changed=..., propose=..., is_leader=...).run()

`reconcile(view, now, new_id) -> Plan` decides what changes, `place(view, tasks, seed)` where
tasks go; both are pure and deterministic for their arguments.
"""

from scheduler.loop import SchedulerLoop
from scheduler.placement import PlacementResult, Unplaceable, place
from scheduler.reconcile import Plan, reconcile
from scheduler.rounds import Round, schedule
from scheduler.view import StateView

__all__ = [
    "PlacementResult",
    "Plan",
    "Round",
    "SchedulerLoop",
    "StateView",
    "Unplaceable",
    "place",
    "reconcile",
    "schedule",
]
