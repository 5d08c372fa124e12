"""Canary updates through real scheduling rounds: an update first starts `canary` tasks of
the new spec beside the old ones (which keep running), then waits until it is promoted (by
hand or after `auto_promote`), when the canaries take their slots and the rest is replaced,
or rolled back, when the canaries go and the old tasks stay as they were."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from consensus.services import SpecError, parse_service_spec
from consensus.tasks import AssignTasks, Task, services, tasks
from consensus.updates import PromoteService, RollbackService
from scheduler.rollout import sort_slot
from tests.unit.scheduler.helpers import Cluster
from tests.unit.scheduler.test_rollout import agents, converge, rollout, started, versions


def canary_started(canary: int = 2, **update) -> tuple[Cluster, set[str]]:
    """3 replicas of version 1 updated with `canary` canaries; also the old tasks' ids."""
    c = Cluster(3)
    started(c, update={"canary": canary, "parallelism": 1, "monitor": 0, **update})
    old = {t.id for t in c.live()}
    c.update("web", image="busybox:2")
    converge(c)
    return c, old


def canaries(c: Cluster) -> list[Task]:
    return [t for t in c.live() if t.canary]


@pytest.mark.parametrize("order", ["stop-first", "start-first"])
def test_the_canaries_run_beside_the_old_tasks_until_a_promote(order):
    c, old = canary_started(order=order)
    r = rollout(c)
    assert sorted(versions(c)) == [1, 1, 1, 2, 2]  # two canaries at once, whatever the parallelism
    assert {t.id for t in c.live() if t.spec_version == 1} == old  # no old task stopped
    assert all(t.state == "running" for t in c.live())  # all five take traffic
    assert len(canaries(c)) == 2 and all(t.slot in (1, 2, 3) for t in canaries(c))
    assert (r.state, r.updated, r.remaining, r.total) == ("canary", 2, 1, 3)
    assert "shoal service promote web" in r.message and "beside 3 of the old version" in r.message
    c.now += 3600
    converge(c)
    assert sorted(versions(c)) == [1, 1, 1, 2, 2] and rollout(c).state == "canary"  # it waits
    kept = {t.id for t in canaries(c)}
    c.ok(PromoteService("web", c.now))
    assert canaries(c) == []  # the promote makes them ordinary tasks of their slots
    converge(c)
    r = rollout(c)
    assert versions(c) == [2, 2, 2] and (r.state, r.updated, r.promoted) == ("completed", 3, True)
    assert kept < {t.id for t in c.live()}  # the canaries count as replaced: only one more
    assert sorted(t.slot for t in c.live()) == [1, 2, 3]


def test_a_rollback_in_the_canary_phase_removes_the_canaries_and_keeps_the_old_tasks():
    c, old = canary_started()
    removed = {t.id for t in canaries(c)}
    c.ok(RollbackService("web", c.now, reason="bad canary"))
    c.round()
    assert {tasks(c.state)[i].message for i in removed} == {
        "canary of version 2 removed: the service is at version 3"
    }
    converge(c)
    assert {t.id for t in c.live()} == old and versions(c) == [1, 1, 1]  # untouched
    assert all(tasks(c.state)[i].desired == "shutdown" for i in removed)
    assert rollout(c).state == "rolled_back"
    assert services(c.state)["web"].spec.image == "busybox"


def test_as_many_canaries_as_replicas_still_wait_for_the_promote():
    c, old = canary_started(canary=3)
    assert sorted(versions(c)) == [1, 1, 1, 2, 2, 2] and rollout(c).state == "canary"
    c.ok(PromoteService("web", c.now))
    converge(c)
    assert versions(c) == [2, 2, 2] and rollout(c).state == "completed"
    assert not old & {t.id for t in c.live()}


def test_a_failed_canary_stops_and_pauses_the_update_leaving_the_old_tasks():
    c = Cluster(3)
    started(c, update={"canary": 1, "monitor": 10})
    old = {t.id for t in c.live()}
    c.update("web", image="busybox:2")
    c.round()
    agents(c)
    (canary,) = canaries(c)
    c.report(canary, "failed", exit_code=1)
    converge(c)
    r = rollout(c)
    assert (r.state, r.failed) == ("paused", 1)
    assert tasks(c.state)[canary.id].desired == "shutdown"
    assert {t.id for t in c.live()} == old


def test_auto_promote_goes_on_by_itself_after_the_canaries_stayed_ready():
    c = Cluster(3)
    started(c, update={"canary": 1, "monitor": 0, "auto_promote": "5m"})
    c.update("web", image="busybox:2")
    for _ in range(6):
        c.round()
        agents(c)
    r = rollout(c)
    assert r.state == "canary" and c.wake_at == r.batch_done_at + 300
    assert sorted(versions(c)) == [1, 1, 1, 2]
    c.now = r.batch_done_at + 299
    c.round()
    assert rollout(c).state == "canary"
    c.now += 1
    c.round()  # the leader proposes the promote itself
    assert rollout(c).promoted and canaries(c) == []
    converge(c)
    assert versions(c) == [2, 2, 2] and rollout(c).state == "completed"


def test_a_new_update_in_the_canary_phase_stops_the_old_canaries():
    c, old = canary_started()
    abandoned = {t.id for t in canaries(c)}
    c.update("web", image="busybox:3")
    converge(c)
    assert all(tasks(c.state)[i].desired == "shutdown" for i in abandoned)
    assert sorted(versions(c)) == [1, 1, 1, 3, 3] and rollout(c).state == "canary"


def task(id: str, version: int, created: float, canary: bool = False) -> Task:
    return Task(
        id, "s", "web", 1, version, node_id="n1", state="running", created_at=created, canary=canary
    )


def test_sort_slot_keeps_the_current_canary_beside_and_stops_an_abandoned_one():
    old, stale, fresh = task("a", 1, 1), task("b", 2, 2, canary=True), task("c", 3, 3, canary=True)
    slot = sort_slot((1, ""), [old, stale, fresh], lambda t: t.spec_version == 3, lambda t: True)
    assert (slot.primary, slot.beside, slot.extra) == (old, fresh, (stale,))
    slot = sort_slot((1, ""), [old, stale], lambda t: t.spec_version == 3, lambda t: True)
    assert (slot.primary, slot.beside, slot.extra) == (old, None, (stale,))


def test_apply_takes_one_canary_per_slot_beside_its_task():
    c, _ = canary_started()
    (first, *_) = canaries(c)
    second = dataclasses.replace(first, id="another", state="pending", node_id="")
    rejected = c.ok(AssignTasks(c.now, create=(second,))).value["rejected"]
    assert rejected == [["another", f"slot {first.slot_key} already has a task"]]
    counts = Counter(t.slot for t in c.live())
    assert sorted(counts.values()) == [1, 2, 2]


def test_promote_is_refused_without_a_canary_waiting():
    c = Cluster(3)
    started(c)
    refused = c.state.apply(PromoteService("web", c.now))
    assert refused.code == 409 and "no canary" in refused.error


@pytest.mark.parametrize(
    "plain, field",
    [
        ({"update": {"canary": -1}}, "update.canary"),
        ({"update": {"auto_promote": "-1s"}}, "update.auto_promote"),
        ({"rollback": {"canary": 1}}, "rollback.canary"),
    ],
)
def test_bad_canary_settings_name_their_field(plain, field):
    with pytest.raises(SpecError) as caught:
        parse_service_spec({"name": "web", "image": "busybox", **plain})
    assert caught.value.field == field


@pytest.mark.parametrize("monitor", [60, 0])  # lost before or after it passed its monitor
def test_a_canary_whose_node_goes_down_is_stopped_and_started_again_elsewhere(monitor):
    c = Cluster(3)
    started(c, update={"canary": 1, "monitor": monitor})
    c.update("web", image="busybox:2")
    c.round()
    agents(c)
    c.round()
    assert rollout(c).state == ("canary" if monitor == 0 else "updating")
    (lost,) = canaries(c)
    c.node_status(lost.node_id, "down")
    converge(c, step=61)
    assert tasks(c.state)[lost.id].desired == "shutdown"
    (again,) = canaries(c)
    assert (
        again.node_id != lost.node_id and rollout(c).state == "canary" and rollout(c).updated == 1
    )
    # The old task on that node was replaced as any lost task is: by the current spec.
    assert sorted(versions(c)) == [1, 1, 2, 2] and len(c.live()) == 4
