"""Rebalancing through real scheduling rounds: a node that joins gets its share of an `auto`
service's tasks, one start-first move at a time, each moved task stopping only once its copy
is ready; `manual` services move only when asked, and never during a rollout; with placement
preferences, tasks move to even out the label values first, then the nodes within each."""

from __future__ import annotations

from collections import Counter

import pytest

from consensus.nodes import nodes
from consensus.services import SpecError, parse_service_spec
from consensus.tasks import services, tasks
from consensus.updates import RequestRebalance
from scheduler.rebalance import REBALANCE_INTERVAL, Spread, uneven
from scheduler.rounds import schedule
from scheduler.view import StateView
from tests.unit.scheduler.helpers import Cluster, make_node
from tests.unit.scheduler.test_rollout import agents


def spread(c: Cluster, name: str = "web") -> list[int]:
    return sorted(Counter(t.node_id for t in c.live(name) if t.state == "running").values())


def six_on_two(**plain) -> Cluster:
    c = Cluster(2)
    c.create(name="web", replicas=6, **plain)
    for _ in range(3):
        c.round()
        agents(c)
    assert spread(c) == [3, 3]
    c.add_node(make_node(2))
    return c


def run(c: Cluster, rounds: int, watch: list, stopped: dict | None = None) -> None:
    for _ in range(rounds):
        c.round()
        for task in tasks(c.state).values():  # why each was stopped, before its agent reports
            if stopped is not None and task.desired == "shutdown" and not task.terminal:
                stopped[task.id] = task.message
        live = c.live("web")
        per_slot = Counter(t.slot for t in live)
        watch.append(
            (sum(t.state == "running" for t in live), sum(1 for n in per_slot.values() if n > 1))
        )
        agents(c)
        c.now += 1


def test_a_joining_node_gets_its_share_one_start_first_move_at_a_time():
    c = six_on_two(rebalance="auto")
    seen: list = []
    stopped: dict = {}
    run(c, 3 * int(REBALANCE_INTERVAL) + 6, seen, stopped)
    assert spread(c) == [2, 2, 2]
    assert all(running >= 6 for running, _ in seen)  # never fewer than 6 running
    assert max(moving for _, moving in seen) == 1  # one move at a time (max_unavailable 1)
    assert list(stopped.values()) == ["moved to node node2 (rebalanced)"] * 2
    first, second = sorted(t.created_at for t in tasks(c.state).values() if t.replaces)
    assert second - first >= REBALANCE_INTERVAL
    assert Counter(t.slot for t in c.live("web")) == Counter(range(1, 7))


def test_a_manual_service_moves_only_when_asked_and_off_never():
    c = six_on_two()
    run(c, 20, [])
    assert spread(c) == [3, 3]
    c.ok(RequestRebalance("web", c.now))
    run(c, 20, [])
    assert spread(c) == [2, 2, 2]
    c2 = six_on_two(rebalance="off")
    refused = c2.state.apply(RequestRebalance("web", c2.now))
    assert refused.code == 409
    run(c2, 20, [])
    assert spread(c2) == [3, 3]


def test_no_move_during_a_rollout():
    c = six_on_two(rebalance="auto", update={"monitor": "1h"})
    c.update("web", env=["V=2"])
    run(c, 20, [])
    assert services(c.state)["web"].rollout.active
    assert not any(t.replaces for t in tasks(c.state).values())


def test_a_failed_copy_is_dropped_and_the_moved_task_keeps_running():
    c = six_on_two(rebalance="auto")
    c.round()
    (copy,) = [t for t in c.live("web") if t.replaces]
    c.report(copy, "failed", exit_code=1)
    c.round()
    assert tasks(c.state)[copy.id].desired == "shutdown"
    assert tasks(c.state)[copy.replaces].desired == "running"


def test_a_drain_moves_tasks_off_start_first_within_the_budget():
    c = Cluster(3)
    c.create(name="web", replicas=6, max_unavailable=2)
    for _ in range(3):
        c.round()
        agents(c)
    on_n0 = {t.id for t in c.live("web") if t.node_id == "n0"}
    assert len(on_n0) == 2
    c.availability("n0", "drain")
    c.round()
    copies = [t for t in c.live("web") if t.replaces]
    assert {t.replaces for t in copies} == on_n0  # both at once: the budget is 2
    assert all(tasks(c.state)[i].desired == "running" for i in on_n0)  # still serving
    agents(c)  # the copies run
    c.round()
    assert all(tasks(c.state)[i].desired == "shutdown" for i in on_n0)
    assert {tasks(c.state)[i].message for i in on_n0} == {"node node0 is drained"}
    assert Counter(t.slot for t in c.live("web")) == Counter(range(1, 7))


def test_a_drain_with_a_budget_of_one_moves_one_task_at_a_time():
    c = Cluster(3)
    c.create(name="web", replicas=6)
    for _ in range(3):
        c.round()
        agents(c)
    c.availability("n0", "drain")
    seen: list = []
    run(c, 8, seen)
    assert max(moving for _, moving in seen) == 1 and all(n >= 6 for n, _ in seen)
    assert not [t for t in c.live("web") if t.node_id == "n0"]


def test_the_budget_is_a_count_or_a_percentage_of_the_replicas():
    def budget(value, replicas=8):
        return parse_service_spec(
            {"name": "w", "image": "b", "replicas": replicas, "max_unavailable": value}
        ).move_budget

    assert (budget(2), budget("3"), budget("25%"), budget("10%"), budget("100%", 3)) == (
        2,
        3,
        2,
        1,
        3,
    )
    for bad in (0, "0%", "101%", "half", "-1"):
        with pytest.raises(SpecError) as caught:
            budget(bad)
        assert caught.value.field == "max_unavailable"


def zones(c: Cluster) -> Counter:
    zone_of = {n.id: n.labels.get("zone", "") for n in nodes(c.state).values()}
    return Counter(zone_of[t.node_id] for t in c.live("web") if t.state == "running")


def six_in_zones(*zones_of_nodes: str, **plain) -> Cluster:
    c = Cluster()
    for i, zone in enumerate(zones_of_nodes):
        c.add_node(make_node(i, labels={"zone": zone}))
    c.create(
        name="web", replicas=6, rebalance="auto", preferences=["spread=node.labels.zone"], **plain
    )
    for _ in range(3):
        c.round()
        agents(c)
    return c


def test_a_node_joining_a_zone_gets_tasks_only_from_its_own_zone():
    c = six_in_zones("a", "b")
    c.add_node(make_node(2, labels={"zone": "b"}))
    seen: list = []
    stopped: dict = {}
    run(c, 2 * int(REBALANCE_INTERVAL) + 6, seen, stopped)
    per_node = Counter(t.node_id for t in c.live("web"))
    assert per_node == {"n0": 3, "n1": 2, "n2": 1}  # zone b's 3 over its two nodes; a keeps 3
    assert all(running >= 6 for running, _ in seen) and max(moving for _, moving in seen) == 1
    assert list(stopped.values()) == ["moved to node node2 (rebalanced)"]


def test_a_new_zone_gets_its_share_one_move_at_a_time():
    c = six_in_zones("a", "a")
    c.add_node(make_node(2, labels={"zone": "c"}))
    seen: list = []
    run(c, 4 * int(REBALANCE_INTERVAL) + 10, seen)
    assert zones(c) == {"a": 3, "c": 3}
    assert sorted(Counter(t.node_id for t in c.live("web") if t.node_id != "n2").values()) == [1, 2]
    assert all(running >= 6 for running, _ in seen) and max(moving for _, moving in seen) == 1


def spread_of(counts: dict, zones_of: dict, fits=None, levels: int = 1) -> Spread:
    paths = {n: tuple(zones_of[n].split("/")) if levels else () for n in counts}
    return Spread(counts, paths, levels, set(counts) if fits is None else set(fits))


@pytest.mark.parametrize(
    "counts, zones_of, fits, levels, move",
    [
        # Zone b has 0 of 4: from the busiest node of a to b's only node.
        ({"n0": 2, "n1": 2, "n2": 0}, {"n0": "a", "n1": "a", "n2": "b"}, None, 1, ("n1", "n2")),
        # Zones even (2 and 2), a's nodes not: within a. Placement's tie between the zones
        # could send an unbound copy to b.
        ({"n0": 2, "n1": 0, "n2": 2}, {"n0": "a", "n1": "a", "n2": "b"}, None, 1, ("n0", "n1")),
        # Even at every level: no move (a node-level spread would move one to n2).
        ({"n0": 2, "n1": 2, "n2": 3}, {"n0": "a", "n1": "a", "n2": "b"}, None, 1, None),
        # Zone b's only node has no room: nothing to do.
        ({"n0": 2, "n1": 2, "n2": 0}, {"n0": "a", "n1": "a", "n2": "b"}, {"n0", "n1"}, 1, None),
        # Nodes without the label form a group of their own.
        ({"n0": 4, "n1": 0}, {"n0": "", "n1": "b"}, None, 1, ("n0", "n1")),
        # Two levels (zone/rack): zone b gets one, on its emptier rack.
        (
            {"n0": 3, "n1": 1, "n2": 1, "n3": 0},
            {"n0": "a/1", "n1": "a/2", "n2": "b/1", "n3": "b/2"},
            None,
            2,
            ("n0", "n3"),
        ),
        # No preferences: from the busiest node to the idlest it fits on.
        (
            {"n0": 4, "n1": 0, "n2": 1},
            {"n0": "", "n1": "", "n2": ""},
            {"n0", "n2"},
            0,
            ("n0", "n2"),
        ),
    ],
)
def test_the_planner_moves_from_the_busiest_to_the_idlest_group_first(
    counts, zones_of, fits, levels, move
):
    assert uneven(spread_of(counts, zones_of, fits, levels)) == move


def test_a_copy_its_node_cannot_take_is_dropped_and_the_moved_task_stays():
    c = six_on_two(rebalance="auto")
    c.now += 1
    planned = schedule(StateView.capture(c.state), c.now, 0, lambda: "copy")
    c.node_status("n2", "down")  # after the move was planned, before it is committed
    c.ok(planned.command)
    for cmd in planned.rollouts:
        c.state.apply(cmd)
    copy = tasks(c.state)["copy"]
    assert (copy.node_id, copy.state, copy.replaces != "") == ("n2", "pending", True)
    assert copy.message.startswith("placement rejected")
    c.round()
    assert tasks(c.state)["copy"].desired == "shutdown"
    assert tasks(c.state)["copy"].message.startswith("move dropped: placement rejected")
    assert tasks(c.state)[copy.replaces].desired == "running"
