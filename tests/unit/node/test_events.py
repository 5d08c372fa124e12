"""Cluster events: the pure state diff on states made by the real state machine, the hub's
bounded fan-out and replay, the feed loop, and the CLI's SSE reader."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings, strategies as st

from consensus.tasks import DeleteService, tasks
from consensus.updates import RollbackService
from node.cli_rollout import parse_sse
from node.api_events import sse
from node.event_feed import EventFeed, EventHub
from node.events import Event, _changed, diff_states
from scheduler.view import StateView
from tests.unit.scheduler.helpers import Cluster


def view(c: Cluster) -> StateView:
    return StateView.capture(c.state)


def test_the_diff_names_services_rollouts_tasks_and_nodes():
    c = Cluster(2)
    empty = view(Cluster(0))
    c.create(name="web", replicas=2, update={"monitor": 0})
    c.round()
    first = view(c)
    kinds = [e.type for e in diff_states(empty, first)]
    assert kinds == ["node.joined", "node.joined", "service.created", "task.created", "task.created"]
    assert diff_states(first, first) == []

    task = next(iter(tasks(c.state).values()))
    c.report(task, "running")
    c.update("web", image="busybox:2")
    c.round()
    c.node_status("n1", "down")
    events = diff_states(first, view(c))
    by_type = {e.type: e for e in events}
    assert by_type["node.status"].message == "node node1 is down"
    assert by_type["service.updated"].message == "service web updated to version 2"
    assert by_type["rollout"].state == "updating" and "0/2 updated" in by_type["rollout"].message
    moved = [e for e in events if e.task_id == task.id]
    assert moved[0].message.endswith("assigned -> running (told to shutdown): updating to version 2")
    assert all(e.index == c.state.applied for e in events)

    before = view(c)
    c.ok(RollbackService("web", c.now, reason="by hand"))
    c.ok(DeleteService("web", c.now))
    kinds = [e.type for e in diff_states(before, view(c))]
    assert kinds[0] == "service.removed" and "task.state" in kinds


def event(n: int) -> Event:
    return Event("task.state", float(n), n, f"event {n}", service="web")


def test_a_slow_subscriber_is_dropped_and_the_others_keep_everything():
    hub = EventHub(history=5, queue_size=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    got = []
    for n in range(1, 8):
        hub.publish([event(n)])
        got.append(fast._queue.get_nowait().seq)  # a reader keeping up
    assert got == list(range(1, 8))
    assert slow.dropped and hub.subscribers == 1
    assert slow._queue.get_nowait() is None  # its stream ends with the end mark
    assert [i.seq for i in hub.since(0)] == [3, 4, 5, 6, 7]  # the kept history
    assert [i.seq for i in hub.since(6)] == [7]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=30), st.integers(1, 8))
def test_no_subscriber_ever_holds_more_than_its_queue(batches, size):
    hub = EventHub(queue_size=size)
    sub = hub.subscribe()
    n = 0
    for count in batches:
        hub.publish([event(n + i) for i in range(count)])
        n += count
        assert sub._queue.qsize() <= size
    assert sub.dropped == (n > size)


async def test_the_feed_publishes_the_diff_of_each_change():
    c = Cluster(1)
    changed = asyncio.Event()
    feed = EventFeed(lambda: view(c), changed)
    sub = feed.hub.subscribe()
    runner = asyncio.ensure_future(feed.run())
    try:
        await asyncio.sleep(0)
        c.create(name="web", replicas=1)
        changed.set()
        item = await asyncio.wait_for(sub.next(), 5)
        assert item.event.type == "service.created" and item.seq == 1
    finally:
        runner.cancel()


async def test_sse_frames_read_back():
    items = EventHub()
    items.publish([event(1), event(2)])
    text = b"".join(sse(i) for i in items.since(0)).decode() + ": keepalive\n\n"

    async def lines():
        for line in text.split("\n"):
            yield line

    read = [(kind, data["seq"], data["message"]) async for kind, data in parse_sse(lines())]
    assert read == [("task.state", 1, "event 1"), ("task.state", 2, "event 2")]


@given(st.dictionaries(st.text("abc", max_size=3), st.integers(0, 3)),
       st.dictionaries(st.text("abc", max_size=3), st.integers(0, 3)))
def test_only_rows_added_replaced_or_removed_count_as_changed(old_plan, new_plan):
    # Rows are objects: the same number in both plans stands for the very same row object.
    rows = [object() for _ in range(4)]
    before = {k: rows[v] for k, v in old_plan.items()}
    after = {k: rows[v] for k, v in new_plan.items()}
    expected = sorted(k for k in before.keys() | after.keys() if before.get(k) is not after.get(k))
    assert _changed(before, after) == expected
