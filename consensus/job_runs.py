"""A job's progress read from its tasks, and the commands the leader's scheduler proposes
when a job finishes (`job.end`) and when its time to live after that runs out (`job.expire`).

Progress is counted from each slot's current task alone: a retry carries its slot's count
of failures in `Task.restarts`, so forgetting old failed tasks (the scheduler keeps a few
per slot) never changes how often a job has failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from consensus.codec import command
from consensus.jobs import JobEnd, JobOutcome
from consensus.state import ClusterState, Result, handles
from consensus.tasks import Service, Task, remove_service, services

# End states that count as a failure of the task (a task that could not start is `rejected`).
FAILED_STATES = frozenset({"failed", "rejected"})


@dataclass(frozen=True, slots=True)
class JobProgress:
    succeeded: int  # slots whose task completed
    failed: int  # failures so far, retries included
    active: int  # tasks told to run that have not ended


def current_tasks(own: Iterable[Task]) -> dict[tuple[int, str], Task]:
    """Each slot's newest task told to run."""
    found: dict[tuple[int, str], Task] = {}
    for task in own:
        if task.desired != "running":
            continue
        seen = found.get(task.slot_key)
        if seen is None or (task.created_at, task.id) > (seen.created_at, seen.id):
            found[task.slot_key] = task
    return found


def slot_failures(task: Task) -> int:
    return task.restarts + (task.state in FAILED_STATES)


def job_progress(own: Iterable[Task]) -> JobProgress:
    slots = current_tasks(own).values()
    return JobProgress(
        succeeded=sum(t.state == "complete" for t in slots),
        failed=sum(slot_failures(t) for t in slots),
        active=sum(not t.terminal for t in slots),
    )


def _job(state: ClusterState, name: str, service_id: str) -> Service | None:
    service = services(state).get(name)
    if service is None or service.id != service_id or service.spec.job is None:
        return None
    return service


@command("job.end")
@dataclass(frozen=True, slots=True)
class EndJob:
    """The job has finished (all completions, or failed past its limit or deadline)."""

    name: str
    service_id: str
    state: JobOutcome
    reason: str
    at: float


@command("job.expire")
@dataclass(frozen=True, slots=True)
class ExpireJob:
    """A finished job has outlived its `ttl_after_finished`: remove it with its tasks."""

    name: str
    service_id: str
    at: float


@handles(EndJob)
def _end(state: ClusterState, cmd: EndJob) -> Result:
    service = _job(state, cmd.name, cmd.service_id)
    if service is None:
        return Result.fail(f"no such job {cmd.name!r}", 404)
    if service.job_end is not None:  # a second leader's late verdict changes nothing
        return Result.fail(f"job {cmd.name!r} already ended ({service.job_end.state})", 409)
    services(state)[cmd.name] = dataclasses.replace(
        service, job_end=JobEnd(cmd.state, cmd.reason, cmd.at)
    )
    return Result(True, value={"state": cmd.state})


@handles(ExpireJob)
def _expire(state: ClusterState, cmd: ExpireJob) -> Result:
    service = _job(state, cmd.name, cmd.service_id)
    if service is None:
        return Result.fail(f"no such job {cmd.name!r}", 404)
    end, job = service.job_end, service.spec.job
    assert job is not None
    if end is None or not job.ttl_after_finished or cmd.at < end.at + job.ttl_after_finished:
        return Result.fail(f"job {cmd.name!r} is not due to expire", 409)
    remove_service(state, service, "job expired", cmd.at)
    return Result(True, value={"id": service.id})
