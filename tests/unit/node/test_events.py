"""Cluster events: the pure state diff on states made by the real state machine, the hub's
bounded fan-out and replay, the feed loop, and the CLI's SSE reader."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.state import ClusterState
from consensus.tasks import DeleteService, tasks
from consensus.updates import RollbackService
from node.api.events import sse
from node.cli.rollout import parse_sse
from node.loops.event_feed import EventFeed, EventHub
from node.loops.events import SEQ_SPAN, Event, _changed, diff_states, events_between
from scheduler.view import StateView
from tests.unit.scheduler.helpers import Cluster, make_node


def view(c: Cluster) -> StateView:
    return StateView.capture(c.state)


def test_the_diff_names_services_rollouts_tasks_and_nodes():
    c = Cluster(2)
    empty = view(Cluster(0))
    c.create(name="web", replicas=2, update={"monitor": 0})
    c.round()
    first = view(c)
    kinds = [e.type for e in diff_states(empty, first)]
    assert kinds == [
        "node.joined",
        "node.joined",
        "service.created",
        "task.created",
        "task.created",
    ]
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
    assert moved[0].message.endswith(
        "assigned -> running (told to shutdown): updating to version 2"
    )
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
        got.append(fast._queue.get_nowait().event.index)  # a reader keeping up
    assert got == list(range(1, 8))
    assert slow.dropped and hub.subscribers == 1
    assert slow._queue.get_nowait() is None  # its stream ends with the end mark
    assert [i.event.index for i in hub.since(0)] == [3, 4, 5, 6, 7]  # the kept history
    assert [i.event.index for i in hub.since(6 * SEQ_SPAN)] == [7]


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
        assert item.event.type == "service.created"
        assert item.seq == c.state.applied * SEQ_SPAN  # the first event of that command
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
    assert read == [("task.state", SEQ_SPAN, "event 1"), ("task.state", 2 * SEQ_SPAN, "event 2")]


@given(
    st.dictionaries(st.text("abc", max_size=3), st.integers(0, 3)),
    st.dictionaries(st.text("abc", max_size=3), st.integers(0, 3)),
)
def test_only_rows_added_replaced_or_removed_count_as_changed(old_plan, new_plan):
    # Rows are objects: the same number in both plans stands for the very same row object.
    rows = [object() for _ in range(4)]
    before = {k: rows[v] for k, v in old_plan.items()}
    after = {k: rows[v] for k, v in new_plan.items()}
    expected = sorted(k for k in before.keys() | after.keys() if before.get(k) is not after.get(k))
    assert _changed(before, after) == expected


class RecordingState(ClusterState):
    """A replica that keeps the commands it applied, to replay them on another."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list = []

    def apply(self, cmd, request_id: str = ""):
        self.log.append(cmd)
        return super().apply(cmd, request_id)


def _history() -> list:
    """The commands of a service's life on 2 nodes: created, placed, running, updated and
    rolled out, a node down, removed."""
    c = Cluster(0)
    c.state = RecordingState()
    for i in range(2):
        c.add_node(make_node(i))
    c.create(name="web", replicas=2, update={"monitor": 0})
    c.settle()
    for task in list(tasks(c.state).values()):
        c.report(task, "running")
    c.update("web", image="busybox:2")
    c.settle()
    c.node_status("n1", "down")
    c.settle()
    c.now += 60
    c.ok(DeleteService("web", c.now))
    return c.state.log


def _events_seen(commands: list, looks: set[int]) -> list[tuple[int, str, str]]:
    """The events a replica applying `commands` publishes when its feed looks after each
    command whose position is in `looks` (and after the last)."""
    state = ClusterState()
    seen, out = StateView.capture(state), []
    for i, cmd in enumerate(commands):
        state.apply(cmd)
        if i in looks or i == len(commands) - 1:
            now = StateView.capture(state)
            out += [(e.seq, e.type, e.message) for e in events_between(seen, now)]
            seen = now
    return out


@settings(max_examples=25)
@given(st.data())
def test_every_replica_numbers_every_event_alike_however_its_commits_arrive(data):
    commands = _history()
    looks = data.draw(st.sets(st.integers(0, len(commands) - 1)))
    one_by_one = _events_seen(commands, set(range(len(commands))))
    assert _events_seen(commands, looks) == one_by_one
    seqs = [seq for seq, _type, _message in one_by_one]
    assert seqs == sorted(set(seqs))  # increasing: `since=` works on any node
    assert {
        "service.created",
        "task.created",
        "task.state",
        "rollout",
        "node.status",
        "service.removed",
    } <= {kind for _seq, kind, _message in one_by_one}


def test_a_removal_carries_the_time_it_was_made():
    c = Cluster(1)
    c.create(name="web", replicas=1)
    before = StateView.capture(c.state)
    c.ok(DeleteService("web", c.now + 300))
    (removed,) = [
        e for e in events_between(before, StateView.capture(c.state)) if e.type == "service.removed"
    ]
    assert removed.at == c.now + 300


def test_a_replica_without_the_changes_diffs_the_states_instead():
    c = Cluster(1)
    before = StateView.capture(c.state)
    c.create(name="web", replicas=1)
    restored = ClusterState.from_msgpack(c.state.to_msgpack())  # a snapshot keeps no changes
    after = StateView.capture(restored)
    assert after.changes == ()
    events = events_between(before, after)
    assert [e.type for e in events] == ["service.created"]
    assert events[0].seq == restored.applied * SEQ_SPAN


def test_a_jobs_end_is_an_event():
    c = Cluster(1)
    c.create(name="once", job={})
    c.settle()
    task = c.live("once")[0]
    c.report(task, "running")
    c.report(task, "complete", exit_code=0)
    before = view(c)
    c.settle()
    (ended,) = [e for e in diff_states(before, view(c)) if e.type == "job.ended"]
    assert (
        ended.state == "complete" and ended.message == "job once complete: 1 of 1 tasks completed"
    )


def test_an_audit_batch_is_one_audit_event_per_entry_numbered_by_its_command():
    from consensus.audit import AuditEntry, RecordAudit

    c = Cluster(1)
    before = view(c)
    entries = (
        AuditEntry(
            5.0,
            "token ops (ab12)",
            "operator",
            "PATCH",
            "/v1/services/web-1",
            200,
            "web-1",
            "web-1",
        ),
        AuditEntry(6.0, "local", "admin", "POST", "/v1/secrets", 201, "db-password"),
    )
    assert c.state.apply(RecordAudit(entries)).ok
    events = events_between(before, view(c))
    assert [(e.type, e.service, e.position) for e in events] == [
        ("audit", "web-1", 0),
        ("audit", "", 1),
    ]
    assert events[0].detail == {
        "who": "token ops (ab12)",
        "role": "operator",
        "method": "PATCH",
        "path": "/v1/services/web-1",
        "resource": "web-1",
        "status": 200,
    }
    assert events[0].message == "token ops (ab12) PATCH /v1/services/web-1 (web-1): 200"
    assert events[1].seq == c.state.applied * SEQ_SPAN + 1
