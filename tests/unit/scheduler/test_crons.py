"""Cron jobs with a controlled clock: when a run is due (time zones, missed runs and the
starting deadline as Kubernetes has them, concurrency), and the state machine starting
each scheduled time at most once, whichever leader proposes it and however often."""

from __future__ import annotations

import datetime

import pytest

from consensus.crons import CreateCron, DeleteCron, FireCron, crons, parse_cron_spec, runs_of
from consensus.job_runs import EndJob
from consensus.secrets import CreateBlob, DeleteBlob
from consensus.services import SpecError
from consensus.tasks import services
from scheduler.crons import decide, schedule_problem
from scheduler.rounds import schedule
from scheduler.view import StateView
from tests.unit.scheduler.helpers import Cluster


def at(text: str) -> float:
    """A UTC time of 2026-01-01 by its clock reading: at("00:05:00")."""
    return datetime.datetime.fromisoformat(f"2026-01-01T{text}+00:00").timestamp()


def make_cron(c: Cluster, name: str = "tick", schedule_: str = "*/5 * * * *", **fields) -> None:
    spec = parse_cron_spec(
        {"name": name, "schedule": schedule_, "template": {"image": "busybox"}, **fields}
    )
    c.ok(CreateCron(f"cron-{name}", spec, c.now))


def cron_at(created: str, **fields):
    c = Cluster(1)
    c.now = at(created)
    make_cron(c, **fields)
    return c, crons(c.state)["tick"]


def test_a_run_is_due_at_its_time_and_not_before():
    c, cron = cron_at("00:02:30")
    early = decide(cron, at("00:04:59.9"), active=False)
    assert early.fire is None and early.wake_at == at("00:05:00")
    assert decide(cron, at("00:05:00"), active=False).fire == at("00:05:00")
    assert decide(cron, at("00:05:00.7"), active=False).fire == at("00:05:00")


def test_a_time_before_the_cron_existed_never_runs():
    c, cron = cron_at("00:05:00.5")
    assert decide(cron, at("00:05:01"), active=False).fire is None


def test_after_an_outage_only_the_latest_missed_time_runs_within_the_starting_deadline():
    c, cron = cron_at("00:02:30", starting_deadline="2m")
    c.ok(FireCron("tick", cron.id, at("00:05:00"), "j1", at("00:05:00")))
    cron = crons(c.state)["tick"]
    assert decide(cron, at("00:31:59"), active=False).fire == at("00:30:00")
    late = decide(cron, at("00:32:00"), active=False)
    assert (late.fire, late.missed, late.wake_at) == (None, at("00:30:00"), at("00:35:00"))
    c2, no_deadline = cron_at("00:02:30")
    assert decide(no_deadline, at("00:49:00"), active=False).fire == at("00:45:00")


def test_the_schedule_reads_in_its_time_zone():
    c, cron = cron_at("00:00:00", schedule_="30 2 * * *", timezone="Europe/Paris")
    decision = decide(cron, at("00:00:01"), active=False)
    assert decision.wake_at == at("01:30:00")  # 02:30 in Paris is 01:30 UTC in winter


def test_forbid_waits_for_the_active_run_allow_and_replace_do_not():
    for concurrency, fires in (("allow", True), ("replace", True), ("forbid", False)):
        c, cron = cron_at("00:02:30", concurrency=concurrency, starting_deadline="1m")
        decision = decide(cron, at("00:05:10"), active=True)
        assert (decision.fire is not None) == fires, concurrency
        if not fires:
            assert decision.wake_at == at("00:06:00")  # when the run would be missed


def test_each_scheduled_time_starts_one_run_whoever_proposes_it():
    c, cron = cron_at("00:02:30")
    c.now = at("00:05:00.2")
    view = StateView.capture(c.state)
    # Two leaders (an old one that has not heard it lost, and the new one) plan from the
    # same state: the second proposal is refused.
    first = schedule(view, c.now, 0, lambda: "job-a").jobs
    second = schedule(view, c.now + 0.3, 1, lambda: "job-b").jobs
    assert [f.scheduled_at for f in first] == [f.scheduled_at for f in second] == [at("00:05:00")]
    assert c.state.apply(first[0]).ok
    refused = c.state.apply(second[0])
    assert refused.code == 409 and "already started" in refused.error
    assert c.state.apply(FireCron("tick", cron.id, at("00:00:00"), "job-c", c.now)).code == 409
    assert [s.name for s in runs_of(c.state, "tick")] == [f"tick-{int(at('00:05:00'))}"]
    run = services(c.state)[f"tick-{int(at('00:05:00'))}"]
    assert run.id == "job-a" and run.cron == "tick" and run.spec.job is not None


def test_through_rounds_a_run_starts_on_time_and_its_task_is_placed():
    c, cron = cron_at("00:02:30")
    c.now = at("00:04:00")
    c.settle()
    assert c.wake_at == at("00:05:00") and not runs_of(c.state, "tick")
    c.now = at("00:05:00.05")
    c.settle()
    (run,) = runs_of(c.state, "tick")
    assert [t.state for t in c.live(run.name)] == ["assigned"]
    assert c.wake_at == at("00:10:00")


def test_replace_removes_the_active_run_and_forbid_refuses_in_apply_too():
    c, cron = cron_at("00:02:30", concurrency="replace")
    c.ok(FireCron("tick", cron.id, at("00:05:00"), "j1", c.now))
    c.ok(FireCron("tick", cron.id, at("00:10:00"), "j2", c.now))
    assert [s.id for s in runs_of(c.state, "tick")] == ["j2"]
    c2, forbid = cron_at("00:02:30", concurrency="forbid")
    c2.ok(FireCron("tick", forbid.id, at("00:05:00"), "j1", c2.now))
    refused = c2.state.apply(FireCron("tick", forbid.id, at("00:10:00"), "j2", c2.now))
    assert refused.code == 409 and "still running" in refused.error
    assert crons(c2.state)["tick"].last_scheduled == at("00:05:00")


def test_finished_runs_beyond_the_history_are_removed_and_deleting_the_cron_removes_its_runs():
    c, cron = cron_at("00:02:30", history=1)
    for minute, job_id in ((5, "j1"), (10, "j2"), (15, "j3")):
        c.ok(FireCron("tick", cron.id, at(f"00:{minute:02d}:00"), job_id, c.now))
        run = next(s for s in runs_of(c.state, "tick") if s.id == job_id)
        c.ok(EndJob(run.name, job_id, "complete", "done", c.now))
    c.ok(FireCron("tick", cron.id, at("00:20:00"), "j4", c.now))
    assert [s.id for s in runs_of(c.state, "tick")] == ["j3", "j4"]  # 1 finished + the new one
    c.ok(DeleteCron("tick", c.now))
    assert not runs_of(c.state, "tick") and "tick" not in crons(c.state)


def test_a_template_names_only_configs_that_exist_and_they_stay_while_it_does():
    c = Cluster(1)
    spec = parse_cron_spec(
        {
            "name": "tick",
            "schedule": "* * * * *",
            "template": {"image": "busybox", "configs": ["conf"]},
        }
    )
    refused = c.state.apply(CreateCron("c1", spec, c.now))
    assert refused.code == 400 and refused.error.startswith("template.configs[0].source")
    c.ok(CreateBlob("config", "b1", "conf", 1, b"x"))
    c.ok(CreateCron("c1", spec, c.now))
    in_use = c.state.apply(DeleteBlob("config", "conf"))
    assert in_use.code == 409 and "tick" in in_use.error


def test_a_run_that_cannot_start_is_recorded_and_not_retried():
    c, cron = cron_at("00:02:30")
    c.create(name=f"tick-{int(at('00:05:00'))}")  # a service took the run's name
    result = c.ok(FireCron("tick", cron.id, at("00:05:00"), "j1", c.now))
    assert "already exists" in result.value["error"]
    cron = crons(c.state)["tick"]
    assert cron.last_scheduled == at("00:05:00") and "already exists" in cron.last_error
    assert decide(cron, at("00:05:01"), active=False).fire is None


@pytest.mark.parametrize(
    "plain, field",
    [
        ({"name": "x" * 53}, "name"),
        ({"history": -1}, "history"),
        ({"concurrency": "sometimes"}, "concurrency"),
        ({"starting_deadline": "soon"}, "starting_deadline"),
        ({"template": {"image": ""}}, "template.image"),
        ({"template": {"image": "b", "job": {"completions": 0}}}, "template.job.completions"),
        ({"template": "busybox"}, "template"),
        ({"template": {"image": "b", "name": "other"}}, "template.name"),
    ],
)
def test_a_bad_cron_spec_names_its_field(plain, field):
    with pytest.raises(SpecError) as caught:
        parse_cron_spec(
            {"name": "tick", "schedule": "* * * * *", "template": {"image": "busybox"}, **plain}
        )
    assert caught.value.field == field


def test_schedule_problems_are_named():
    now = at("00:00:00")
    assert schedule_problem("*/5 * * * *", "Europe/Paris", now) == ""
    assert schedule_problem("@hourly", "UTC", now) == ""
    assert schedule_problem("61 * * * *", "UTC", now).startswith("schedule:")
    assert "never comes" in schedule_problem("0 0 31 2 *", "UTC", now)
    assert schedule_problem("* * * * *", "Mars/Olympus", now).startswith("timezone:")
    assert schedule_problem("* * * * *", "../etc/passwd", now).startswith("timezone:")
