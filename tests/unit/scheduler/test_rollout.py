"""Rolling updates through real scheduling rounds on the real state machine: batches of
`parallelism`, stop-first and start-first, monitor and delay, failure actions, rollback,
and properties over random agent behaviour."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.rollout import Rollout
from consensus.tasks import Task, services, tasks
from consensus.updates import RecordRollout, RollbackService
from scheduler.rollout import same_tasks, task_spec
from tests.unit.scheduler.helpers import Cluster


def rollout(c: Cluster, name: str = "web") -> Rollout:
    record = services(c.state)[name].rollout
    assert record is not None
    return record


def agents(c: Cluster, healthy: bool = True) -> None:
    """Every agent does its part: assigned tasks run, tasks told to stop stop."""
    for task in list(tasks(c.state).values()):
        if task.desired == "shutdown" and not task.terminal and task.state != "orphaned":
            c.report(task, "shutdown")
        elif task.desired == "running" and task.state == "assigned":
            c.report(task, "running", health="healthy" if healthy else "none")


def converge(c: Cluster, rounds: int = 40, step: float = 1.0) -> None:
    """Rounds, agents and the clock until nothing changes or is due."""
    for _ in range(rounds):
        before = c.state.applied
        c.round()
        agents(c)
        if c.state.applied == before:
            if c.wake_at is None:
                return
            c.now = max(c.now + step, c.wake_at)
    raise AssertionError("no convergence")


def versions(c: Cluster, name: str = "web") -> list[int]:
    return [t.spec_version for t in c.live(name)]


def running(c: Cluster, name: str = "web") -> list[Task]:
    return [t for t in c.live(name) if t.state == "running"]


def started(c: Cluster, **plain) -> None:
    c.create(name="web", replicas=3, **plain)
    converge(c)
    assert len(running(c)) == 3 and services(c.state)["web"].rollout is None


def test_scaling_and_policies_replace_nothing():
    c = Cluster(3)
    started(c)
    ids = {t.id for t in c.live()}
    c.update("web", replicas=4, update={"parallelism": 3}, rollback={"order": "start-first"})
    converge(c)
    assert ids < {t.id for t in c.live()} and services(c.state)["web"].rollout is None
    assert same_tasks(services(c.state)["web"].spec_at(1), services(c.state)["web"].spec)
    assert task_spec(services(c.state)["web"].spec).replicas == 0


def test_stop_first_replaces_one_batch_at_a_time():
    c = Cluster(3)
    started(c, update={"parallelism": 2, "monitor": 0})
    c.update("web", image="busybox:2")
    c.round()
    assert sorted(versions(c)) == [1, 2, 2]  # two stopped and two successors in one command
    r = rollout(c)
    assert (r.state, len(r.batch), r.remaining, r.total) == ("updating", 2, 1, 3)
    c.round()
    assert len(rollout(c).batch) == 2  # the batch is not ready: nothing more happens
    agents(c)
    converge(c)
    r = rollout(c)
    assert (r.state, r.updated, r.failed, r.remaining) == ("completed", 3, 0, 0)
    assert versions(c) == [2, 2, 2] and len(running(c)) == 3
    assert all(t.desired == "shutdown" for t in tasks(c.state).values() if t.spec_version == 1)


def test_start_first_keeps_the_old_task_until_its_successor_is_ready():
    c = Cluster(3)
    started(c, update={"order": "start-first", "monitor": 0})
    c.update("web", env=["V=2"])
    c.round()
    assert sorted(versions(c)) == [1, 1, 1, 2]  # one extra task in slot 1; nothing stopped
    c.round()
    assert sorted(versions(c)) == [1, 1, 1, 2]
    agents(c)  # the new task runs and is healthy
    c.round()
    slot1 = [t for t in c.live() if t.slot == 1]
    assert [t.spec_version for t in slot1] == [2]
    converge(c)
    assert versions(c) == [2, 2, 2] and rollout(c).state == "completed"


def test_a_batch_counts_once_its_tasks_stayed_ready_for_the_monitor_period_then_waits_delay():
    c = Cluster(3)
    started(c, update={"monitor": "10s", "delay": "5s"})
    c.update("web", image="busybox:2")
    c.round()
    agents(c)
    ready_at = c.now
    c.round()
    assert rollout(c).batch[0].ready_at == ready_at and c.wake_at == ready_at + 10
    c.now = ready_at + 10
    c.round()
    r = rollout(c)
    assert (r.updated, r.batch, r.batch_done_at) == (1, (), c.now) and c.wake_at == c.now + 5
    c.now += 4
    c.round()
    assert sorted(versions(c)) == [1, 1, 2]
    c.now += 1
    c.round()
    assert sorted(versions(c)) == [1, 2, 2]


def fail_new(c: Cluster, version: int) -> None:
    for task in c.live():
        if task.spec_version == version and task.state == "assigned":
            c.report(task, "failed", error="exit status 1", exit_code=1)


def test_failure_action_pause_stops_the_rollout_and_says_why():
    c = Cluster(3)
    started(c, update={"monitor": 0, "failure_action": "pause"}, restart={"delay": "1h"})
    c.update("web", image="busybox:bad")
    c.round()
    fail_new(c, 2)
    converge(c)
    r = rollout(c)
    assert r.state == "paused" and r.failed == 1
    assert "1 of 3 replaced tasks failed (last: exit status 1)" in r.message
    assert sorted(versions(c)) == [1, 1, 2]  # no further batch


def test_failure_action_continue_goes_on():
    c = Cluster(3)
    started(c, update={"monitor": 0, "failure_action": "continue"}, restart={"delay": 0})
    c.update("web", image="busybox:flaky")
    c.round()
    fail_new(c, 2)
    converge(c)
    r = rollout(c)
    assert (r.state, r.failed, r.updated) == ("completed", 1, 2) and "1 failed" in r.message
    assert versions(c) == [2, 2, 2]


def test_failure_action_rollback_returns_to_the_previous_spec_by_itself():
    c = Cluster(3)
    started(
        c,
        update={"monitor": 0, "failure_action": "rollback", "parallelism": 2},
        rollback={"parallelism": 0},
    )
    old_ids = {t.id for t in c.live()}
    c.update("web", image="busybox:bad")
    c.round()
    fail_new(c, 2)
    converge(c)
    service = services(c.state)["web"]
    r = rollout(c)
    assert service.version == 3 and service.spec.image == "busybox"
    assert (r.kind, r.state, r.from_version, r.config.parallelism) == (
        "rollback",
        "rolled_back",
        2,
        0,
    )
    assert r.reason.startswith("update to version 2 failed: 2 of 3 replaced tasks failed")
    assert versions(c).count(3) == 2 and len(running(c)) == 3
    assert len(old_ids & {t.id for t in c.live()}) == 1  # the untouched slot kept its task


def test_a_failing_rollback_pauses_instead_of_rolling_back_again():
    c = Cluster(3)
    started(
        c,
        update={"monitor": 0},
        rollback={"monitor": 0, "failure_action": "rollback"},
        restart={"delay": "1h"},
    )
    c.update("web", image="busybox:2")
    converge(c)
    c.ok(RollbackService("web", c.now))
    c.round()
    fail_new(c, 3)
    converge(c)
    r = rollout(c)
    assert (r.kind, r.state) == ("rollback", "paused") and r.message.startswith("rollback paused")
    assert services(c.state)["web"].version == 3


def test_scaling_during_a_rollout_continues_it_and_a_paused_one_stays_paused():
    c = Cluster(3)
    started(c, update={"monitor": "30s"})
    c.update("web", image="busybox:2")
    c.round()
    agents(c)
    c.round()
    c.update("web", replicas=4)
    c.round()
    r = rollout(c)
    assert (r.version, r.state, len(r.batch)) == (3, "updating", 1)
    c.ok(RecordRollout("web", Rollout(r.service_id, 3, 1, state="paused")))
    c.update("web", replicas=2)
    converge(c)
    assert rollout(c).state == "paused" and rollout(c).version == 4


def test_rollback_command_errors_name_the_reason():
    c = Cluster(1)
    c.create(name="web", replicas=1)
    none = c.state.apply(RollbackService("web", c.now))
    assert not none.ok and "no earlier spec" in none.error
    missing = c.state.apply(RollbackService("nope", c.now))
    assert (missing.ok, missing.code) == (False, 404)
    c.update("web", image="busybox:2")
    gone = c.state.apply(RollbackService("web", c.now, to_version=9))
    assert gone.code == 404 and "kept: 1" in gone.error
    stale = c.state.apply(RollbackService("web", c.now, expected_version=1))
    assert stale.code == 409
    ok = c.ok(RollbackService("web", c.now, reason="by hand"))
    assert ok.value["rolled_back_to"] == 1 and services(c.state)["web"].spec.image == "busybox"
    assert rollout(c).reason == "by hand"
    again = c.ok(RollbackService("web", c.now))  # rolling back twice returns to version 2's spec
    assert again.value["rolled_back_to"] == 2 and services(c.state)["web"].version == 4


def test_a_stale_rollout_record_is_refused():
    c = Cluster(1)
    c.create(name="web", replicas=1)
    service = services(c.state)["web"]
    stale = c.state.apply(RecordRollout("web", Rollout(service.id, 7, 6)))
    assert (stale.ok, stale.code) == (False, 409) and "version 1, not 7" in stale.error


# -- properties over random agent behaviour -------------------------------------------------

EVENTS = st.lists(
    st.tuples(st.sampled_from(["run", "stop", "tick", "round"]), st.integers(0, 20)),
    min_size=1,
    max_size=60,
)


def random_agents(c: Cluster, kind: str, pick: int) -> None:
    """One agent action on one task, chosen by `pick`: tasks start and stop in any order."""
    if kind == "run":
        todo = [t for t in c.live() if t.state == "assigned"]
        if todo:
            c.report(todo[pick % len(todo)], "running", health="healthy")
    elif kind == "stop":
        todo = [t for t in tasks(c.state).values() if t.desired == "shutdown" and not t.terminal]
        if todo:
            c.report(sorted(todo, key=lambda t: t.id)[pick % len(todo)], "shutdown")
    elif kind == "tick":
        c.now += pick / 4
    else:
        c.round()


def slots_serving(c: Cluster) -> dict[int, list[Task]]:
    """Per slot, the tasks running there (whatever they were told)."""
    serving: dict[int, list[Task]] = {slot: [] for slot in range(1, 5)}
    for task in tasks(c.state).values():
        if task.state == "running":
            serving[task.slot].append(task)
    return serving


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), EVENTS)
def test_stop_first_never_has_more_than_parallelism_slots_down(parallelism, events):
    c = Cluster(3)
    c.create(
        name="web",
        replicas=4,
        health={"kind": "tcp", "port": 80},
        update={"parallelism": parallelism, "monitor": "1s"},
    )
    converge(c)
    c.update("web", image="busybox:2")
    for kind, pick in events:
        random_agents(c, kind, pick)
        down = [slot for slot, tasks_there in slots_serving(c).items() if not tasks_there]
        assert len(down) <= parallelism
        new = Counter(
            t.slot
            for t in tasks(c.state).values()
            if t.spec_version == 2 and t.desired == "running"
        )
        assert max(new.values(), default=0) <= 1
    converge(c)
    assert versions(c) == [2, 2, 2, 2] and rollout(c).state == "completed"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3), EVENTS)
def test_start_first_always_keeps_every_slot_served(parallelism, events):
    c = Cluster(3)
    c.create(
        name="web",
        replicas=4,
        health={"kind": "tcp", "port": 80},
        update={"parallelism": parallelism, "monitor": "1s", "order": "start-first"},
    )
    converge(c)
    c.update("web", image="busybox:2")
    for kind, pick in events:
        random_agents(c, kind, pick)
        serving = slots_serving(c)
        assert all(serving[slot] for slot in serving), serving
        for there in serving.values():
            assert sum(t.spec_version == 2 for t in there) <= 1
    converge(c)
    assert versions(c) == [2, 2, 2, 2] and rollout(c).state == "completed"
    assert rollout(c).updated == 4
