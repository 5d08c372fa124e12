"""Volume affinity: a slot that wrote to a named volume goes back to the node holding the data,
or waits with a reason; through real rounds on the real state machine and over random
histories."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.model import ClusterInfo
from consensus.services import parse_service_spec
from consensus.tasks import Service, Task
from scheduler.placement import place
from scheduler.view import StateView
from tests.unit.scheduler.helpers import Cluster, GiB, make_node

DATA = {"volumes": ["data:/var/lib/data"]}


def homes(c: Cluster) -> dict[int, str]:
    return {t.slot: t.node_id for t in c.live()}


def pending_messages(c: Cluster) -> dict[int, str]:
    return {t.slot: t.message for t in c.live() if t.state == "pending"}


def test_a_slot_waits_for_its_down_node_and_returns_there():
    c = Cluster(3)
    c.create(name="db", replicas=3, **DATA)
    c.settle()
    before = homes(c)
    (slot,) = [s for s, node in before.items() if node == "n1"]
    c.node_status("n1", "down")
    c.settle()
    assert pending_messages(c) == {
        slot: "the data of its named volumes is on node node1, which is down"
    }
    assert {s: n for s, n in homes(c).items() if s != slot} == {
        s: n for s, n in before.items() if s != slot
    }
    c.node_status("n1", "ready")
    c.settle()
    assert homes(c) == before


def test_without_affinity_or_without_named_volumes_a_slot_moves():
    for extra in ({**DATA, "volume_affinity": "none"}, {"volumes": ["/srv:/srv", "/scratch"]}):
        c = Cluster(3)
        c.create(name="db", replicas=3, **extra)
        c.settle()
        c.node_status("n1", "down")
        c.settle()
        assert not pending_messages(c)
        assert sorted(homes(c)) == [1, 2, 3] and "n1" not in homes(c).values()


def test_a_restarted_task_and_an_updated_spec_stay_on_the_slots_node():
    c = Cluster(4)
    c.create(name="db", replicas=2, restart={"delay": "0s"}, **DATA)
    c.settle()
    before = homes(c)
    for task in c.live():
        c.report(task, "failed", error="boom")
    c.settle()
    assert homes(c) == before
    c.update("db", env={"V": "2"}, update={"parallelism": 0})
    c.settle()
    assert homes(c) == before and {t.spec_version for t in c.live()} == {2}


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda c: c.node_status("n0", "down"),
            "the data of its named volumes is on node node0, which is down",
        ),
        (
            lambda c: c.availability("n0", "drain"),
            "the data of its named volumes is on node node0, which is drained",
        ),
        (
            lambda c: c.availability("n0", "pause"),
            "the data of its named volumes is on node node0, which is paused",
        ),
    ],
)
def test_each_reason_the_home_node_cannot_take_the_slot_is_explained(change, message):
    c = Cluster(2)
    c.create(name="db", constraints=["node.id==n0"], **DATA)
    c.settle()
    change(c)
    c.update("db", constraints=[])
    c.settle()
    assert pending_messages(c) == {1: message}


def spec(**plain):
    return parse_service_spec({"name": "db", "image": "busybox", **DATA, **plain})


def placed_view(nodes, service: Service, history: list[Task]) -> StateView:
    return StateView(
        ClusterInfo(), {n.id: n for n in nodes}, {service.name: service}, {t.id: t for t in history}
    )


def old_task(slot: int, node_id: str, created_at: float = 1.0, state: str = "failed") -> Task:
    return Task(
        f"old-{slot}-{node_id}-{created_at}",
        "svc-db",
        "db",
        slot,
        1,
        node_id=node_id,
        desired="shutdown",
        state=state,
        created_at=created_at,
    )


def new_task(slot: int, **fields) -> Task:
    return Task(f"new-{slot}", "svc-db", "db", slot, 1, created_at=9.0, **fields)


def test_a_full_or_departed_home_node_keeps_the_task_pending_with_the_reason():
    service = Service("svc-db", spec(replicas=2, resources={"reservations": {"memory": "2G"}}))
    nodes = [make_node(0, memory=GiB), make_node(1)]
    v = placed_view(nodes, service, [old_task(1, "n0"), old_task(2, "gone")])
    reserved = service.spec.resources.reservations
    result = place(v, [new_task(1, reserved=reserved), new_task(2, reserved=reserved)], seed=1)
    assert not result.placements
    assert {u.task_id: u.explanation for u in result.unplaceable} == {
        "new-1": "the data of its named volumes is on node node0: insufficient memory on 1 node",
        "new-2": "the data of its named volumes is on node gone, which has left the cluster: set volume_affinity "
        "none to start the task elsewhere on an empty volume",
    }


def test_the_newest_placed_task_of_a_slot_is_its_home():
    service = Service("svc-db", spec())
    nodes = [make_node(i) for i in range(3)]
    v = placed_view(
        nodes, service, [old_task(1, "n0", 1.0), old_task(1, "n2", 5.0), old_task(1, "n1", 3.0)]
    )
    assert place(v, [new_task(1)], seed=1).placements[0].node_id == "n2"


@settings(max_examples=200)
@given(
    statuses=st.lists(st.sampled_from(["joining", "ready", "down"]), min_size=1, max_size=6),
    history=st.lists(st.one_of(st.none(), st.integers(0, 7)), min_size=1, max_size=8),
    affinity=st.sampled_from(["node", "none"]),
    seed=st.integers(0, 1000),
)
def test_every_slot_with_a_home_goes_there_or_waits(statuses, history, affinity, seed):
    """History: per slot, the index of the node its last task ran on (an index past the
    nodes is a node that left), or None for a slot that never ran."""
    nodes = [make_node(i, status=s) for i, s in enumerate(statuses)]
    service = Service("svc-db", spec(replicas=len(history), volume_affinity=affinity))
    earlier = [old_task(slot, f"n{at}") for slot, at in enumerate(history, 1) if at is not None]
    v = placed_view(nodes, service, earlier)
    result = place(v, [new_task(slot) for slot in range(1, len(history) + 1)], seed)
    where = {p.task_id: p.node_id for p in result.placements}
    why = {u.task_id: u.explanation for u in result.unplaceable}
    ready = {n.id for n in nodes if n.status == "ready"}
    for slot, at in enumerate(history, 1):
        task_id = f"new-{slot}"
        if affinity == "none" or at is None:  # free: any ready node, if there is one
            assert where.get(task_id) in ready if ready else task_id in why
        elif f"n{at}" in ready:
            assert where[task_id] == f"n{at}"
        else:
            assert task_id not in where and why[task_id].startswith(
                "the data of its named volumes is on node"
            )
