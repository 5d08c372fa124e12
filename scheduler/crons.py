"""When a cron job's next run is due: pure (`now` comes in), run by the leader's scheduler.

As Kubernetes does, only the latest scheduled time since the last run counts (a cluster back
from an outage starts one run, not one per missed time), and with a starting deadline a run
more than that late is missed. The state machine starts a scheduled time at most once, so a
new leader that decides the same simply has its proposal refused.
"""

from __future__ import annotations

import datetime
import math
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass

from croniter import croniter
from croniter.croniter import CroniterError

from consensus.crons import Cron, FireCron

# A schedule's times are searched this many years ahead at most (31 February never comes).
MAX_YEARS_BETWEEN_RUNS = 5


@dataclass(frozen=True, slots=True)
class CronDecision:
    fire: float | None = None  # the scheduled time to start a run for now
    wake_at: float | None = None  # when to decide again if nothing changes first
    missed: float | None = None  # a scheduled time let go: past its starting deadline


def _times(schedule: str, timezone: str, at: float) -> croniter:
    zone = zoneinfo.ZoneInfo(timezone)
    start = datetime.datetime.fromtimestamp(at, zone)
    return croniter(schedule, start, max_years_between_matches=MAX_YEARS_BETWEEN_RUNS)


def schedule_problem(schedule: str, timezone: str, now: float) -> str:
    """Why a schedule cannot be used, or "" when it can (it must also ever come)."""
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"timezone: unknown time zone {timezone!r} (use a name such as Europe/Paris or UTC)"
    if not croniter.is_valid(schedule):
        return (
            f"schedule: {schedule!r} is not a cron schedule: five fields (minute hour "
            "day-of-month month day-of-week), an optional sixth for seconds, or @hourly etc."
        )
    try:
        _times(schedule, timezone, now).get_next(float)
    except CroniterError:
        return f"schedule: {schedule!r} never comes"
    return ""


def next_time(cron: Cron, after: float) -> float | None:
    """The first scheduled time after `after`, or None when there is none."""
    try:
        at: float = _times(cron.spec.schedule, cron.spec.timezone, after).get_next(float)
        return at
    except (CroniterError, zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def decide(cron: Cron, now: float, active: bool) -> CronDecision:
    """What to do about `cron` at `now`; `active`: a run it started has not finished."""
    since = max(cron.last_scheduled, cron.created_at)
    try:
        # Cron times are whole seconds: the latest one at or before `now`.
        latest = _times(cron.spec.schedule, cron.spec.timezone, math.floor(now) + 1).get_prev(float)
    except (CroniterError, zoneinfo.ZoneInfoNotFoundError, ValueError):
        return CronDecision()  # checked when it was made; a node without that zone skips it
    upcoming = next_time(cron, now)
    if latest <= since:
        return CronDecision(wake_at=upcoming)
    deadline = cron.spec.starting_deadline
    if deadline and now >= latest + deadline:
        return CronDecision(wake_at=upcoming, missed=latest)
    if active and cron.spec.concurrency == "forbid":
        # The run's end wakes the scheduler; past the deadline the run is missed.
        return CronDecision(wake_at=latest + deadline if deadline else upcoming)
    return CronDecision(fire=latest, wake_at=upcoming)


def plan_crons(
    crons: dict[str, Cron], active: set[str], now: float, new_id: Callable[[], str]
) -> tuple[tuple[FireCron, ...], float | None]:
    """The runs to start now and when to look again; `active`: crons with a run going."""
    fires: list[FireCron] = []
    wake_at: float | None = None
    for name in sorted(crons):
        cron = crons[name]
        decision = decide(cron, now, name in active)
        if decision.fire is not None:
            fires.append(FireCron(name, cron.id, decision.fire, new_id(), now))
        if decision.wake_at is not None:
            wake_at = decision.wake_at if wake_at is None else min(wake_at, decision.wake_at)
    return tuple(fires), wake_at
