"""Jobs through real scheduling rounds on the real state machine: completions within the
parallelism, completed tasks never rerun, retries with exponential backoff up to the limit,
a dead node's unfinished tasks rerun elsewhere, global jobs, the deadline and the TTL."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.job_runs import EndJob, ExpireJob, job_progress
from consensus.jobs import JobConfig
from consensus.services import SpecError, parse_service_spec
from consensus.store import version_of
from consensus.tasks import UpdateService, services, tasks, tasks_of
from scheduler.jobs import job_backoff
from tests.unit.scheduler.helpers import Cluster


def run_all(c: Cluster, name: str, state: str = "running") -> None:
    """Report every assigned task of `name` in `state`."""
    for task in c.live(name):
        if task.state == "assigned":
            c.report(task, state)


def active(c: Cluster, name: str) -> list:
    return [t for t in c.live(name) if not t.terminal]


def test_completions_run_within_parallelism_and_completed_tasks_never_run_again():
    c = Cluster(3)
    c.create(name="batch", job={"completions": 5, "parallelism": 2})
    done: set[str] = set()
    for _ in range(10):
        c.settle()
        assert len(active(c, "batch")) <= 2
        run_all(c, "batch")
        for task in active(c, "batch"):
            c.report(task, "complete", exit_code=0)
            done.add(task.id)
        c.now += 1
    c.settle()
    job = services(c.state)["batch"]
    assert job.job_end is not None and job.job_end.state == "complete"
    live = c.live("batch")
    assert sorted(t.slot for t in live) == [1, 2, 3, 4, 5]
    assert {t.id for t in live} == done  # the same five tasks: none restarted
    assert all(t.state == "complete" and t.exit_code == 0 for t in live)
    c.now += 3600
    assert c.settle() == 0  # a finished job without a TTL stays as it is


def test_failures_retry_with_doubling_backoff_until_the_limit_then_the_job_fails():
    c = Cluster(2)
    c.create(name="flaky", job={"backoff_limit": 2, "backoff_delay": "10s"})
    c.settle()
    seen_codes = []
    for attempt in range(3):
        (task,) = active(c, "flaky")
        assert task.restarts == attempt
        c.report(task, "running")
        c.report(task, "failed", exit_code=attempt + 3, error="exit status")
        seen_codes.append(attempt + 3)
        c.settle()
        if attempt == 2:
            break
        assert not active(c, "flaky")  # waiting out the backoff
        delay = job_backoff(services(c.state)["flaky"].spec.job, attempt + 1)
        assert delay == 10.0 * 2**attempt
        assert c.wake_at == c.now + delay
        c.now += delay - 0.5
        c.settle()
        assert not active(c, "flaky")
        c.now += 0.5
        c.settle()
    job = services(c.state)["flaky"]
    assert job.job_end is not None and job.job_end.state == "failed"
    assert job.job_end.reason == "BackoffLimitExceeded: 3 failed tasks (limit 2)"
    assert not active(c, "flaky")
    codes = [
        t.exit_code
        for t in sorted(tasks_of(version_of(c.state), "flaky"), key=lambda t: t.created_at)
    ]
    assert codes == seen_codes
    assert job_progress(tasks_of(version_of(c.state), "flaky")).failed == 3


def test_a_dead_nodes_unfinished_tasks_run_elsewhere_and_its_completed_ones_do_not():
    c = Cluster(3)
    c.create(name="batch", job={"completions": 6, "parallelism": 0})
    c.settle()
    run_all(c, "batch")
    on_n0 = [t for t in c.live("batch") if t.node_id == "n0"]
    assert len(on_n0) == 2
    c.report(on_n0[0], "complete", exit_code=0)
    c.node_status("n0", "down")
    c.settle()
    live = {t.slot: t for t in c.live("batch")}
    assert live[on_n0[0].slot].id == on_n0[0].id  # its completed task stays done
    moved = live[on_n0[1].slot]
    assert moved.id != on_n0[1].id and moved.node_id != "n0" and moved.restarts == 0
    assert tasks(c.state)[on_n0[1].id].state == "orphaned"


def test_a_global_job_completes_once_on_every_eligible_node():
    c = Cluster(3)
    c.availability("n2", "drain")
    c.create(name="prep", mode="global", job={"parallelism": 0})
    c.settle()
    assert sorted(t.node_id for t in c.live("prep")) == ["n0", "n1"]
    run_all(c, "prep")
    for task in c.live("prep"):
        c.report(task, "complete", exit_code=0)
    c.settle()
    assert services(c.state)["prep"].job_end.state == "complete"
    assert services(c.state)["prep"].job_end.reason == "2 of 2 tasks completed"


def test_past_its_deadline_a_job_fails_and_what_runs_is_stopped():
    c = Cluster(1)
    c.create(name="slow", job={"deadline": "1m"})
    c.settle()
    run_all(c, "slow")
    assert c.wake_at == 1060.0
    c.now = 1060.0
    c.settle()
    job = services(c.state)["slow"]
    assert job.job_end.state == "failed" and job.job_end.reason.startswith("DeadlineExceeded")
    (task,) = tasks_of(version_of(c.state), "slow")
    assert task.desired == "shutdown" and task.message.startswith("job failed: DeadlineExceeded")


def test_a_finished_job_is_removed_after_its_ttl():
    c = Cluster(1)
    c.create(name="once", job={"ttl_after_finished": "1h"})
    c.settle()
    run_all(c, "once")
    c.report(c.live("once")[0], "complete", exit_code=0)
    c.settle()
    end = services(c.state)["once"].job_end
    assert c.wake_at == end.at + 3600
    assert c.state.apply(ExpireJob("once", "svc-once", end.at + 10)).code == 409  # not due
    c.now = end.at + 3600
    c.settle()
    assert "once" not in services(c.state)
    assert all(t.desired == "shutdown" for t in tasks(c.state).values())


def test_a_job_ends_once_and_its_spec_never_changes():
    c = Cluster(1)
    c.create(name="once", job={})
    job = services(c.state)["once"]
    assert c.state.apply(EndJob("once", job.id, "failed", "x", 1.0)).ok
    again = c.state.apply(EndJob("once", job.id, "complete", "y", 2.0))
    assert not again.ok and services(c.state)["once"].job_end.state == "failed"
    refused = c.state.apply(UpdateService(dataclasses.replace(job.spec, image="other"), 3.0))
    assert refused.code == 409 and "cannot change" in refused.error


def test_job_backoff_doubles_and_is_capped():
    job = JobConfig(backoff_delay=10)
    assert [job_backoff(job, n) for n in range(5)] == [0.0, 10.0, 20.0, 40.0, 80.0]
    assert job_backoff(job, 30) == 360.0
    assert job_backoff(JobConfig(backoff_delay=0), 3) == 0.0


@pytest.mark.parametrize(
    "job, field",
    [
        ({"completions": 0}, "job.completions"),
        ({"parallelism": -1}, "job.parallelism"),
        ({"backoff_limit": 5000}, "job.backoff_limit"),
        ({"deadline": "-1s"}, "job.deadline"),
        ({"ttl_after_finished": "soon"}, "job.ttl_after_finished"),
        ({"surprise": 1}, "job.surprise"),
    ],
)
def test_a_bad_job_config_names_its_field(job, field):
    with pytest.raises(SpecError) as caught:
        parse_service_spec({"name": "j", "image": "busybox", "job": job})
    assert caught.value.field == field


def test_a_job_publishes_no_ports():
    with pytest.raises(SpecError) as caught:
        parse_service_spec({"name": "j", "image": "busybox", "job": {}, "ports": ["8080:80"]})
    assert caught.value.field == "ports"
