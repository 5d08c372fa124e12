"""What a job's tasks should do next: part of `reconcile`, pure like it (`now` comes in).

Slots are a replicated job's 1..completions, or a global job's one per eligible node. A slot
whose task completed is done for good. A failed task is replaced after its slot's backoff
(`backoff_delay` doubled per earlier failure of the slot) while the job's failures stay
within `backoff_limit`; a task whose node died or was drained is re-run elsewhere without
counting as a failure (a global job's slot goes with its node). At most `parallelism` tasks
run at once, retries first. The job ends once: complete when every slot is done; failed past
its backoff limit or its deadline, when what still runs is stopped. A finished job with a
`ttl_after_finished` is removed with its tasks that long after it ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consensus.job_runs import EndJob, ExpireJob, current_tasks, job_progress, slot_failures
from consensus.jobs import JobConfig, JobOutcome
from consensus.tasks import Service, StopTask, Task

if TYPE_CHECKING:
    from scheduler.reconcile import _Planner

# A slot's retry delay doubles per failure up to this (Kubernetes caps at 6 minutes).
MAX_JOB_BACKOFF = 360.0


def job_backoff(job: JobConfig, failures: int) -> float:
    """Seconds to wait after a slot's `failures`-th failure before retrying it."""
    if job.backoff_delay <= 0 or failures <= 0:
        return 0.0
    return min(
        job.backoff_delay * 2.0 ** min(failures - 1, 20), max(job.backoff_delay, MAX_JOB_BACKOFF)
    )


def plan_job(planner: _Planner, service: Service, own: list[Task]) -> None:
    job = service.spec.job
    assert job is not None
    slots = current_tasks(own)
    for task in own:  # a slot runs one task: any other told to run is stopped
        if task.desired == "running" and slots[task.slot_key] is not task:
            planner.stop.append(StopTask(task.id, "another task runs this slot"))
    if service.job_end is not None:
        _finished(planner, service, job, slots)
    else:
        _running(planner, service, job, slots)
    planner.collect([t for t in own if t.desired == "shutdown"], service_exists=True)


def _finished(
    planner: _Planner, service: Service, job: JobConfig, slots: dict[tuple[int, str], Task]
) -> None:
    end = service.job_end
    assert end is not None
    for task in slots.values():
        if not task.terminal:
            planner.stop.append(StopTask(task.id, f"job {end.state}: {end.reason}"))
    if job.ttl_after_finished:
        due = end.at + job.ttl_after_finished
        if planner.now >= due:
            planner.jobs.append(ExpireJob(service.name, service.id, planner.now))
        else:
            planner.wake(due)


def _running(
    planner: _Planner, service: Service, job: JobConfig, slots: dict[tuple[int, str], Task]
) -> None:
    spec, now = service.spec, planner.now
    if spec.mode == "replicated":
        wanted = {(slot, "") for slot in range(1, job.completions + 1)}
    else:
        wanted = {
            (0, node.id)
            for node in planner.view.nodes.values()
            if node.availability == "active" and not planner.node_problem(node, spec)
        }
    progress = job_progress(slots.values())
    verdict = _verdict(service, job, wanted, slots, progress.failed, now)
    if verdict is not None:
        state, reason = verdict
        planner.jobs.append(EndJob(service.name, service.id, state, reason, now))
        return
    if job.deadline:
        planner.wake(service.created_at + job.deadline)
    active = progress.active
    retries: list[tuple[Task, str, int]] = []  # (task, reason, restarts of its replacement)
    for key in sorted(slots):
        task = slots[key]
        node = planner.view.nodes.get(task.node_id)
        if task.state == "pending":
            planner.pending.append(task)
        elif not task.terminal:
            problem = planner.node_problem(node, spec)
            if problem and key[1]:  # a global job's slot lives and dies with its node
                planner.stop.append(StopTask(task.id, problem))
            elif problem:
                planner.replace(service, task, f"{problem}: run again elsewhere", task.restarts)
        elif task.state == "complete" or key not in wanted:
            continue
        elif task.state in ("failed", "rejected"):
            due = task.finished_at + job_backoff(job, slot_failures(task))
            if now < due:
                planner.wake(due)
            else:
                retries.append((task, f"task {task.state}: retried", slot_failures(task)))
        else:  # it ended without failing or completing (its node stopped it): run it again
            retries.append((task, f"task {task.state}: run again", task.restarts))
    room = (job.parallelism or len(wanted)) - active
    for task, reason, restarts in retries[: max(0, room)]:
        planner.replace(service, task, reason, restarts)
    room -= len(retries)
    for slot, node_id in planner.take_slots(sorted(wanted - slots.keys())[: max(0, room)]):
        planner.new(service, slot, node_id, restarts=0)


def _verdict(
    service: Service,
    job: JobConfig,
    wanted: set[tuple[int, str]],
    slots: dict[tuple[int, str], Task],
    failed: int,
    now: float,
) -> tuple[JobOutcome, str] | None:
    if wanted and all(key in slots and slots[key].state == "complete" for key in wanted):
        return "complete", f"{len(wanted)} of {len(wanted)} tasks completed"
    if failed > job.backoff_limit:
        return "failed", f"BackoffLimitExceeded: {failed} failed tasks (limit {job.backoff_limit})"
    if job.deadline and now >= service.created_at + job.deadline:
        return "failed", f"DeadlineExceeded: not finished {job.deadline:g}s after it started"
    return None
