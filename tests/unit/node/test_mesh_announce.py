"""What a node announces for its tasks, and how the table converges on it at every other
node whatever order (and how many times) the announcer's news arrives."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.services import HealthCheck, ServiceSpec
from consensus.tasks import Endpoint, PortBinding, Task, TaskReport
from consensus.wire import to_plain
from netoverlay.gossip.config import GossipConfig
from netoverlay.gossip.membership import Membership
from netoverlay.gossip.model import Member
from netoverlay.gossip.table import GossipTable
from node.mesh.announce import (
    Announcement,
    Observed,
    changes,
    endpoint_key,
    fold,
    task_of_key,
    wanted,
)
from node.mesh.view import build_view

PLAIN = ServiceSpec("web", "img")
CHECKED = ServiceSpec("web", "img", health=HealthCheck(kind="http"))
AT = Endpoint("10.0.0.1", (PortBinding(80, 31000),))


def task(**changes) -> Task:
    base = Task("t1", "s1", "web", 1, 1, node_id="n1", state="running", endpoint=AT)
    return dataclasses.replace(base, **changes)


def announced(t: Task, spec=PLAIN, seen=None) -> bool:
    return endpoint_key(t.id) in wanted([(t, spec)], {t.id: seen} if seen else {})


@pytest.mark.parametrize(
    "t, spec, expected",
    [
        (task(), PLAIN, True),  # no check: running is enough
        (task(state="starting"), PLAIN, False),
        (task(health="unhealthy"), PLAIN, False),  # the image's own check still counts
        (task(), CHECKED, False),  # a checked task waits for its first healthy result
        (task(health="starting"), CHECKED, False),
        (task(health="healthy"), CHECKED, True),
        (task(health="healthy", desired="shutdown"), CHECKED, False),  # told to stop: out at once
        (task(state="failed"), PLAIN, False),
        (task(endpoint=Endpoint("10.0.0.1")), PLAIN, False),  # nothing to reach it on
        (task(), None, True),  # its spec version is gone: judged as unchecked
        # No port, but an address on an overlay network: reached there (by VIP and DNS).
        (task(endpoint=Endpoint("10.0.0.1", (), {"appnet": "10.200.0.2"})), PLAIN, True),
    ],
)
def test_which_tasks_are_announced(t, spec, expected):
    assert announced(t, spec) is expected


def test_the_agents_observation_overrides_the_older_replicated_state():
    healthy = task(health="healthy")
    assert not announced(healthy, CHECKED, Observed("failed"))
    assert not announced(healthy, CHECKED, Observed("running", "unhealthy"))
    # Observed healthy before the report is committed: announced already.
    assert announced(task(health="starting"), CHECKED, Observed("running", "healthy"))
    moved = Endpoint("10.0.0.1", (PortBinding(80, 32000),))
    (value,) = wanted([(task(), PLAIN)], {"t1": Observed("running", None, moved)}).values()
    assert value["ports"] == [{"target": 80, "host_port": 32000, "protocol": "tcp"}]


def test_fold_keeps_what_a_report_leaves_out_and_an_end_is_final():
    seen = fold(None, TaskReport("t1", "running", health="healthy", endpoint=AT))
    seen = fold(seen, TaskReport("t1", "running"))
    assert seen == Observed("running", "healthy", AT)
    ended = fold(seen, TaskReport("t1", "failed", error="killed"))
    assert fold(ended, TaskReport("t1", "running", health="healthy")) == ended


def test_changes_write_new_and_changed_values_and_tombstone_the_rest():
    held = {"ep/a": {"v": 1}, "ep/b": {"v": 1}, "ep/c": {"v": 1}}
    want = {"ep/a": {"v": 1}, "ep/b": {"v": 2}, "ep/d": {"v": 1}}
    diff = changes(held, want)
    assert diff.set == {"ep/b": {"v": 2}, "ep/d": {"v": 1}} and diff.delete == ("ep/c",)
    assert not changes(want, want)


def test_endpoint_keys_round_trip_and_other_keys_are_not_endpoints():
    assert task_of_key(endpoint_key("t1")) == "t1"
    assert task_of_key("ep/") is None and task_of_key("other/t1") is None


# -- the table from the announcer's point of view -------------------------------------------

TASKS = ["t1", "t2", "t3"]
steps = st.lists(
    st.dictionaries(st.sampled_from(TASKS), st.integers(31000, 31003)), min_size=1, max_size=6
)


def value(port: int) -> dict:
    return to_plain(Announcement("web", "10.0.0.1", (PortBinding(80, port),)))


def announce_steps(announcer: Membership, steps: list[dict[str, int]]) -> list:
    """Drive the announcer through each wanted set as the mesh does; every entry it
    published, in order (what gossip disseminates)."""
    news = []
    for step in steps:
        held = {e.key: e.value for e in announcer.table.live()}
        diff = changes(held, {endpoint_key(t): value(port) for t, port in step.items()})
        for key in diff.delete:
            announcer.local_delete(key, 0.0)
            news.append(announcer.table.get("n1", key))
        for key, plain in diff.set.items():
            announcer.local_set(key, plain, 0.0)
            news.append(announcer.table.get("n1", key))
    return news


def served(entries) -> set[tuple[str, int]]:
    view = build_view([], entries, [Member("n1", ("10.0.0.1", 7422))])
    return {(e.task_id, e.port) for e in view.endpoints.get("web", ())}


@given(steps, st.randoms(use_true_random=False), st.integers(0, 6))
def test_any_order_and_duplicates_of_the_news_end_at_the_last_announcement(steps, rnd, extra):
    announcer = Membership(GossipConfig(), Member("n1", ("10.0.0.1", 7422)), random.Random(0))
    news = announce_steps(announcer, steps)
    delivered = news + [rnd.choice(news) for _ in range(extra if news else 0)]
    rnd.shuffle(delivered)
    receiver = GossipTable()
    for entry in delivered:
        receiver.merge(entry, 0.0)
    assert served(receiver.live()) == set(steps[-1].items())


def test_a_withdrawal_wins_over_the_announcement_it_follows_in_either_order():
    announcer = Membership(GossipConfig(), Member("n1", ("10.0.0.1", 7422)), random.Random(0))
    announced_then_gone = announce_steps(announcer, [{"t1": 31000}, {}])
    assert [e.tombstone for e in announced_then_gone] == [False, True]
    for order in (announced_then_gone, announced_then_gone[::-1]):
        receiver = GossipTable()
        for entry in order:
            receiver.merge(entry, 0.0)
        assert served(receiver.entries()) == set()


def test_an_announcement_from_another_node_with_a_bad_overlay_address_is_refused():
    with pytest.raises(ValueError, match="networks.appnet"):
        Announcement("web", "10.0.0.1", networks={"appnet": "not-an-address"})
