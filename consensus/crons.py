"""Cron jobs: a job template started on a schedule (Kubernetes' CronJob).

The leader's scheduler decides when a run is due (scheduler.crons, with croniter) and
proposes `cron.fire` carrying the scheduled time; `apply` starts the run only if that time
is later than the last one started, so each scheduled time starts at most one run however
often leaders change or retry. The schedule and time zone are checked by the API, never
here: `apply` must not depend on a node's cron library or time zone database.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Literal

from consensus.codec import command
from consensus.services import ServiceSpec, SpecError, parse_service_spec
from consensus.state import ClusterState, Result, handles, register_table
from consensus.tasks import Service, add_service, remove_service, services, spec_problem
from consensus.units import parse_duration
from consensus.wire import WireError, from_plain, to_plain

CRONS = "crons"
# A run is named NAME-<scheduled time in epoch seconds>: 52 + 1 + 10 characters fit a DNS label.
MAX_NAME = 52
MAX_HISTORY = 100
MAX_SCHEDULE = 200
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")

Concurrency = Literal["allow", "forbid", "replace"]


@dataclass(frozen=True, slots=True)
class CronSpec:
    name: str
    schedule: str  # five cron fields (a sixth sets seconds), or @hourly, @daily ...
    template: ServiceSpec  # the job each run starts (its name is the cron's)
    timezone: str = "UTC"
    # allow: runs may overlap; forbid: a due run waits while one is active (and is missed
    # past the starting deadline); replace: the active run is removed for the new one.
    concurrency: Concurrency = "allow"
    starting_deadline: float = (
        0.0  # a run not started this long after its time is missed; 0 = never
    )
    history: int = 3  # finished runs kept (with their tasks and logs)


@dataclass(frozen=True, slots=True)
class Cron:
    id: str
    spec: CronSpec
    created_at: float
    last_scheduled: float = 0.0  # the scheduled time of the last run started
    last_job: str = ""  # the run it started
    last_error: str = ""  # why the last due run could not start, if it could not

    @property
    def name(self) -> str:
        return self.spec.name


register_table(CRONS, Cron)


def crons(state: ClusterState) -> dict[str, Cron]:
    """Cron jobs by name."""
    return state.table(CRONS)


def run_name(cron: str, scheduled_at: float) -> str:
    return f"{cron}-{int(scheduled_at)}"


def runs_of(state: ClusterState, cron: str) -> list[Service]:
    """The jobs a cron started that are still kept, oldest first."""
    return sorted(
        (s for s in services(state).values() if s.cron == cron),
        key=lambda s: (s.created_at, s.name),
    )


# -- the spec -------------------------------------------------------------------------


def cron_errors(spec: CronSpec) -> list[SpecError]:
    errors: list[SpecError] = []

    def check(ok: bool, name: str, reason: str) -> None:
        if not ok:
            errors.append(SpecError(name, reason))

    check(
        len(spec.name) <= MAX_NAME and bool(_DNS_LABEL.fullmatch(spec.name)),
        "name",
        f"{spec.name!r} is not a cron name: 1-{MAX_NAME} lowercase letters, digits or '-', "
        "starting and ending with a letter or digit",
    )
    check(
        0 < len(spec.schedule) <= MAX_SCHEDULE,
        "schedule",
        f"must be a cron schedule of at most {MAX_SCHEDULE} characters",
    )
    check(0 < len(spec.timezone) <= 64, "timezone", "must name a time zone, such as Europe/Paris")
    check(
        math.isfinite(spec.starting_deadline) and spec.starting_deadline >= 0,
        "starting_deadline",
        f"must be seconds (0 or more), not {spec.starting_deadline}",
    )
    check(
        0 <= spec.history <= MAX_HISTORY,
        "history",
        f"must be between 0 and {MAX_HISTORY}, not {spec.history}",
    )
    check(
        spec.template.job is not None and spec.template.name == spec.name,
        "template",
        "must be a job named after the cron",
    )
    return errors


def parse_cron_spec(plain: object) -> CronSpec:
    """A structurally checked CronSpec from the API's plain data, or SpecError naming the
    field. The template is a job spec without a name (`job` defaults to every default)."""
    if not isinstance(plain, dict):
        raise SpecError("", f"a cron spec must be an object, not {type(plain).__name__}")
    name, template = plain.get("name"), plain.get("template")
    if not isinstance(name, str):
        raise SpecError("name", f"must be a string, not {name!r}")
    if not isinstance(template, dict):
        raise SpecError("template", "must be an object: the spec of the job each run starts")
    if "name" in template and template["name"] != name:
        raise SpecError("template.name", "a run is named after its cron: leave it out")
    try:
        job = parse_service_spec({**template, "name": name, "job": template.get("job") or {}})
    except SpecError as exc:
        raise SpecError(f"template.{exc.field}" if exc.field else "template", exc.reason) from None
    rest = {k: v for k, v in plain.items() if k != "template"}
    try:
        if rest.get("starting_deadline") is not None:
            rest["starting_deadline"] = parse_duration(
                rest["starting_deadline"], "starting_deadline"
            )
        spec = from_plain(CronSpec, {**rest, "template": to_plain(job)})
    except WireError as exc:
        raise SpecError(exc.field, exc.reason) from None
    errors = cron_errors(spec)
    if errors:
        raise errors[0]
    return spec


# -- commands ---------------------------------------------------------------------------


@command("cron.create")
@dataclass(frozen=True, slots=True)
class CreateCron:
    id: str
    spec: CronSpec
    at: float


@command("cron.update")
@dataclass(frozen=True, slots=True)
class UpdateCron:
    """Replace a cron job's spec (applying a changed file): the runs it started and the
    time of its last run stay, so a changed schedule never starts a time twice."""

    spec: CronSpec
    at: float


@command("cron.delete")
@dataclass(frozen=True, slots=True)
class DeleteCron:
    """Remove a cron job and every run it started that is still kept."""

    name: str
    at: float


@command("cron.fire")
@dataclass(frozen=True, slots=True)
class FireCron:
    """Start the run of `scheduled_at` (the leader's scheduler proposes it once it is due)."""

    name: str
    cron_id: str
    scheduled_at: float
    job_id: str
    at: float


def _cron_problem(state: ClusterState, spec: CronSpec) -> Result | None:
    """Why `spec` cannot be a cron job in this state: its own fields, then its template's."""
    errors = cron_errors(spec)
    if errors:
        return Result.fail(str(errors[0]), 400)
    problem = spec_problem(state, spec.template)
    if problem:
        return Result.fail(f"template.{problem.error}", problem.code)
    return None


@handles(CreateCron)
def _create(state: ClusterState, cmd: CreateCron) -> Result:
    problem = _cron_problem(state, cmd.spec)
    if problem:
        return problem
    table = crons(state)
    if cmd.spec.name in table:
        return Result.fail(f"name: cron job {cmd.spec.name!r} already exists", 409)
    table[cmd.spec.name] = Cron(cmd.id, cmd.spec, cmd.at)
    return Result(True, value={"id": cmd.id})


@handles(UpdateCron)
def _update(state: ClusterState, cmd: UpdateCron) -> Result:
    problem = _cron_problem(state, cmd.spec)
    if problem:
        return problem
    table = crons(state)
    cron = table.get(cmd.spec.name)
    if cron is None:
        return Result.fail(f"no such cron job {cmd.spec.name!r}", 404)
    table[cmd.spec.name] = dataclasses.replace(cron, spec=cmd.spec)
    return Result(True, value={"id": cron.id})


@handles(DeleteCron)
def _delete(state: ClusterState, cmd: DeleteCron) -> Result:
    cron = crons(state).pop(cmd.name, None)
    if cron is None:
        return Result.fail(f"no such cron job {cmd.name!r}", 404)
    for run in runs_of(state, cmd.name):
        remove_service(state, run, "cron job removed", cmd.at)
    return Result(True, value={"id": cron.id})


@handles(FireCron)
def _fire(state: ClusterState, cmd: FireCron) -> Result:
    table = crons(state)
    cron = table.get(cmd.name)
    if cron is None or cron.id != cmd.cron_id:
        return Result.fail(f"no such cron job {cmd.name!r}", 404)
    if cmd.scheduled_at <= max(cron.last_scheduled, cron.created_at):
        return Result.fail(
            f"cron job {cmd.name!r} already started its run of {cron.last_scheduled:.0f} or later",
            409,
        )
    runs = runs_of(state, cmd.name)
    active = [run for run in runs if run.job_end is None]
    if active and cron.spec.concurrency == "forbid":
        return Result.fail(
            f"cron job {cmd.name!r} forbids overlapping runs and {active[0].name} is still running",
            409,
        )
    if cron.spec.concurrency == "replace":
        for run in active:
            remove_service(state, run, f"replaced by the next run of cron job {cmd.name}", cmd.at)
    spec = dataclasses.replace(cron.spec.template, name=run_name(cmd.name, cmd.scheduled_at))
    started = add_service(state, Service(cmd.job_id, spec, 1, cmd.at, cmd.at, cron=cmd.name))
    # A run that cannot start (a secret it names is gone) is over too: trying it again each
    # round would only fill the log.
    table[cmd.name] = dataclasses.replace(
        cron,
        last_scheduled=cmd.scheduled_at,
        last_job=spec.name if started.ok else cron.last_job,
        last_error="" if started.ok else started.error,
    )
    finished = [run for run in runs if run.job_end is not None and run.name in services(state)]
    for run in finished[: max(0, len(finished) - cron.spec.history)]:
        remove_service(state, run, f"beyond the history of cron job {cmd.name}", cmd.at)
    return Result(True, value={"job": spec.name if started.ok else "", "error": started.error})
