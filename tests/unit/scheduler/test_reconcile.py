"""Reconcile through real scheduling rounds on the real state machine: slots, node loss and
return, drain, global services following nodes, restart policy with backoff, history."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.services import RestartPolicy
from consensus.tasks import DeleteService, services, tasks
from scheduler.reconcile import MAX_BACKOFF, TASK_HISTORY, reconcile, restart_backoff
from scheduler.view import StateView
from tests.unit.scheduler.helpers import Cluster, make_node


def slots(c: Cluster, service: str = "web") -> list[int]:
    return [t.slot for t in c.live(service)]


def test_create_places_every_slot_once_and_settles():
    c = Cluster(3)
    c.create(name="web", replicas=5)
    assert c.settle() == 1
    assert slots(c) == [1, 2, 3, 4, 5]
    assert all(t.state == "assigned" for t in c.live())
    assert sorted(Counter(t.node_id for t in c.live()).values()) == [1, 2, 2]


def test_scaling_down_stops_the_highest_slots_and_up_fills_them_again():
    c = Cluster(2)
    c.create(name="web", replicas=4)
    c.settle()
    c.update("web", replicas=2)
    c.settle()
    assert slots(c) == [1, 2]
    c.update("web", replicas=3)
    c.settle()
    assert slots(c) == [1, 2, 3]


def test_tasks_of_a_down_node_move_keeping_their_slot_and_are_stopped_when_it_returns():
    c = Cluster(3)
    c.create(name="web", replicas=6)
    c.settle()
    lost = {t.slot: t for t in c.live() if t.node_id == "n0"}
    c.node_status("n0", "down")
    c.settle()
    assert slots(c) == [1, 2, 3, 4, 5, 6]
    assert all(t.node_id != "n0" for t in c.live())
    moved = {t.slot for t in c.live() if t.slot in lost}
    assert moved == set(lost)
    old = [tasks(c.state)[t.id] for t in lost.values()]
    assert all((t.desired, t.state) == ("shutdown", "orphaned") for t in old)
    c.node_status("n0", "ready")
    c.settle()
    assert Counter(t.slot for t in c.live()) == Counter(range(1, 7))  # no slot runs twice
    assert all(tasks(c.state)[t.id].desired == "shutdown" for t in old)


def test_drain_moves_tasks_off_and_pause_keeps_them():
    c = Cluster(3)
    c.create(name="web", replicas=6)
    c.settle()
    c.availability("n1", "pause")
    c.availability("n2", "drain")
    c.settle()
    by_node = Counter(t.node_id for t in c.live())
    assert by_node["n2"] == 0 and by_node["n1"] == 2 and by_node["n0"] == 4
    drained = [t for t in tasks(c.state).values() if t.node_id == "n2"]
    assert all(
        t.desired == "shutdown" and t.state == "assigned" for t in drained
    )  # its agent stops them


def test_global_service_follows_nodes_joining_leaving_and_constraints():
    c = Cluster(2, labels={"tier": "edge"})
    c.create(name="agent", mode="global", constraints=["node.labels.tier==edge"])
    c.settle()
    assert sorted(t.node_id for t in c.live()) == ["n0", "n1"]
    c.add_node(make_node(2, labels={"tier": "edge"}))
    c.add_node(make_node(3, labels={"tier": "core"}))
    c.settle()
    assert sorted(t.node_id for t in c.live()) == ["n0", "n1", "n2"]
    c.node_status("n1", "down")
    c.settle()
    assert sorted(t.node_id for t in c.live()) == ["n0", "n2"]
    c.node_status("n1", "ready")
    c.settle()
    assert sorted(t.node_id for t in c.live()) == ["n0", "n1", "n2"]


def test_a_pending_task_explains_itself_and_is_placed_when_room_appears():
    c = Cluster(1, memory=1 << 30)
    c.create(name="web", replicas=2, resources={"reservations": {"memory": "768Mi"}})
    c.settle()
    waiting = [t for t in c.live() if t.state == "pending"]
    assert [t.message for t in waiting] == ["insufficient memory on 1 node"]
    c.add_node(make_node(1))
    c.settle()
    assert all(t.state == "assigned" for t in c.live())


def test_a_failed_task_is_replaced_after_its_backoff():
    c = Cluster(2)
    c.create(name="web", replicas=1, restart={"delay": 10})
    c.settle()
    first = c.live()[0]
    c.report(first, "running")
    c.now += 1
    c.report(first, "failed", exit_code=1)
    assert c.settle() == 0 and c.wake_at == c.now + 10  # backoff: nothing yet, a wake-up time
    c.now += 10
    c.settle()
    (second,) = c.live()
    assert second.id != first.id and second.slot == first.slot and second.restarts == 1
    c.report(second, "failed", exit_code=1)
    c.settle()
    assert c.wake_at == c.now + 20  # doubled


@pytest.mark.parametrize(
    "condition, end, restarted",
    [
        ("any", "complete", True),
        ("any", "failed", True),
        ("on-failure", "complete", False),
        ("on-failure", "failed", True),
        ("none", "failed", False),
    ],
)
def test_restart_conditions(condition, end, restarted):
    c = Cluster(1)
    c.create(name="web", replicas=1, restart={"condition": condition, "delay": 0})
    c.settle()
    (task,) = c.live()
    c.report(task, end)
    c.settle()
    (now,) = c.live()
    assert (now.id != task.id) is restarted


def test_max_attempts_stops_restarting():
    c = Cluster(1)
    c.create(name="web", replicas=1, restart={"delay": 0, "max_attempts": 2})
    c.settle()
    for _ in range(3):
        c.report(c.live()[0], "failed")
        c.settle()
    (last,) = c.live()
    assert (last.state, last.restarts) == ("failed", 2)


def test_ended_tasks_are_forgotten_beyond_the_history_and_with_their_service():
    c = Cluster(1)
    c.create(name="web", replicas=1, restart={"delay": 0})
    c.settle()
    for _ in range(TASK_HISTORY + 3):
        c.report(c.live()[0], "failed")
        c.settle()
    ended = [t for t in tasks(c.state).values() if t.desired == "shutdown"]
    assert len(ended) == TASK_HISTORY
    c.ok(DeleteService("web", c.now))
    (still_running,) = [t for t in tasks(c.state).values() if not t.terminal]
    c.report(still_running, "shutdown")
    c.settle()
    assert not tasks(c.state)


def test_a_spec_change_replaces_tasks_still_pending():
    c = Cluster(1, memory=1 << 30)
    c.create(name="web", replicas=1, resources={"reservations": {"memory": "2G"}})
    c.settle()
    c.update("web", resources={"reservations": {"memory": "512M"}})
    c.settle()
    (task,) = c.live()
    assert task.state == "assigned" and task.spec_version == 2


@given(st.integers(0, 50), st.floats(0, 120))
def test_backoff_grows_and_is_capped(restarts, delay):
    policy = RestartPolicy(delay=delay)
    wait = restart_backoff(policy, restarts)
    assert wait <= max(delay, MAX_BACKOFF)
    assert restart_backoff(policy, restarts + 1) >= wait


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["down", "ready", "drain", "active", "scale", "fail"]),
            st.integers(0, 3),
            st.integers(0, 8),
        ),
        max_size=12,
    )
)
def test_every_slot_runs_at_most_once_through_any_history(events):
    c = Cluster(4)
    c.create(name="web", replicas=5, restart={"delay": 0})
    c.settle()
    for kind, node, n in events:
        if kind in ("down", "ready"):
            c.node_status(f"n{node}", kind)
        elif kind in ("drain", "active"):
            c.availability(f"n{node}", kind)
        elif kind == "scale":
            c.update("web", replicas=n)
        else:
            running = [t for t in c.live() if t.state == "assigned"]
            if running:
                c.report(running[n % len(running)], "failed")
        c.now += 1
        c.settle()
        live = c.live()
        replicas = services(c.state)["web"].spec.replicas
        assert Counter(t.slot for t in live) == Counter(range(1, replicas + 1))
        ready = {
            n.id
            for n in c.state.table("nodes").values()
            if n.status == "ready" and n.availability == "active"
        }
        assert all(t.node_id in ready for t in live if t.state == "assigned")


def test_a_round_makes_at_most_its_batch_of_new_slots_and_the_next_rounds_the_rest():
    c = Cluster(3)
    c.create(name="web", replicas=7)
    view = StateView.capture(c.state)
    plan = reconcile(view, c.now, iter(str(i) for i in range(100)).__next__, max_new_slots=3)
    assert sorted(t.slot for t in plan.create) == [1, 2, 3]
    c.settle()
    assert slots(c) == [1, 2, 3, 4, 5, 6, 7]
