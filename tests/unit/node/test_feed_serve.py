"""A voter's feed, served by a real one-node Raft and applied by a member's copy: the copy
ends up equal to the voter's state; a member resumes from its index with entries while the
ring holds them and with a snapshot once it does not; a retried write that the voters
answer from their record of requests is not applied twice by a member restored from a
snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest
from aiohttp import web

import consensus  # noqa: F401  (registers commands and tables)
from consensus import codec
from consensus.feed_state import FeedState
from consensus.feed_wire import Beat, Entries, FeedDecoder, Frame, Snapshot
from consensus.model import Node
from consensus.nodes import RegisterNode, UpdateNode
from consensus.raft import RaftNode, RaftTuning
from node.devcluster.localcluster import wait_for
from node.feed.serve import serve_feed, serves_feed
from tests.unit.consensus.test_raft_changes import free_port

RING = 20


@pytest.fixture
async def voter(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    node = RaftNode(
        data_dir=str(tmp_path),
        address=address,
        password="t",
        tuning=RaftTuning(compaction_min_entries=RING),
    )
    node.start("voter", [address])

    async def leads() -> bool:
        return node.is_leader() and node._committed_in_term()

    await wait_for(leads, timeout=10, what="a leader")
    await node.propose(
        RegisterNode(
            Node(id="id1", name="n1", address="127.0.0.1", api_port=1, raft_port=2, gossip_port=3)
        )
    )
    yield node
    node.stop()


async def _label(voter: RaftNode, count: int, tag: str) -> None:
    for i in range(count):
        await voter.propose(UpdateNode("id1", set_labels={"seq": f"{tag}-{i}"}))


async def _follow(voter: RaftNode, copy: FeedState) -> list[Frame]:
    """Serve the feed from the copy's index until the copy holds the voter's state."""
    decoder, frames = FeedDecoder(), []

    async def write(data: bytes) -> None:
        for frame in decoder.feed(data):
            frames.append(frame)
            if isinstance(frame, Snapshot):
                copy.restore(frame)
            elif isinstance(frame, Entries):
                copy.apply(frame)

    serving = asyncio.ensure_future(serve_feed(voter, copy.applied, write))
    try:
        await wait_for(lambda: _equal(voter, copy), timeout=10, what="the copy to reach the voter")
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    return frames


async def _equal(voter: RaftNode, copy: FeedState) -> bool:
    with voter.view() as state:
        return (
            copy.applied == state.applied
            and copy.version.detached().to_msgpack() == state.detached().to_msgpack()
        )


async def test_a_copy_follows_resumes_from_its_index_and_falls_back_to_a_snapshot(voter):
    copy = FeedState()
    await _label(voter, 5, "a")
    first = await _follow(voter, copy)
    assert isinstance(first[0], Beat) and first[0].leader == voter.address
    assert not any(isinstance(f, Snapshot) for f in first), "the ring held every entry"

    await _label(voter, RING // 2, "b")
    resumed = await _follow(voter, copy)
    assert not any(isinstance(f, Snapshot) for f in resumed)
    assert [f.first for f in resumed if isinstance(f, Entries)][0] == copy.applied - RING // 2 + 1

    await _label(voter, RING * 2, "c")
    behind = await _follow(voter, copy)
    assert sum(isinstance(f, Snapshot) for f in behind) == 1 and copy.snapshots == 1


async def test_a_retried_write_is_applied_once_on_a_copy_restored_from_a_snapshot(voter):
    retried = codec.encode(UpdateNode("id1", set_labels={"retry": "first"}), "request-1")
    await voter.propose_bytes(retried)
    await _label(voter, RING * 2, "d")  # the copy will need a snapshot
    copy = FeedState()
    await _follow(voter, copy)
    assert copy.snapshots == 1
    # The same request again, after another write changed the label: answered from the
    # record of requests, so the label stays as the later write left it, on both.
    await voter.propose(UpdateNode("id1", set_labels={"retry": "second"}))
    await voter.propose_bytes(retried)
    await _follow(voter, copy)
    with copy.version as state:
        assert state.table("nodes")["id1"].labels["retry"] == "second"


async def test_a_member_that_stops_reading_is_dropped_instead_of_buffered(voter):
    """Back-pressure over a real socket: a member that stops reading while the voter applies
    more than the kernel's buffers hold makes its stream end after `stall`; the voter keeps
    no more than one batch and the socket's buffer for it."""
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def feed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            await serve_feed(voter, 0, response.write, stall=1.0)
        except TimeoutError:
            outcome.set_result("dropped")
        return response

    app = web.Application()
    app.router.add_get("/feed", feed)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /feed HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        # Then it never reads: 48 MiB of entries (garbage commands apply as errors, but each
        # one is an entry of the feed all the same) cannot all fit in loopback's buffers.
        for _ in range(96):
            await voter.propose_bytes(os.urandom(512 * 1024))
        assert await asyncio.wait_for(outcome, 20) == "dropped"
    finally:
        writer.close()
        await runner.cleanup()


async def test_the_leader_of_several_voters_leaves_the_feed_to_its_followers(tmp_path):
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    voters = [
        RaftNode(data_dir=str(tmp_path / f"n{i}"), address=a, password="t")
        for i, a in enumerate(addresses)
    ]
    for node in voters:
        node.start("voter", addresses)
    try:

        async def elected() -> bool:
            return any(n.is_leader() and n._committed_in_term() for n in voters)

        await wait_for(elected, timeout=15, what="a leader")
        leader = next(n for n in voters if n.is_leader())
        follower = next(n for n in voters if not n.is_leader())
        assert serves_feed(follower) and not serves_feed(leader)
        sent: list[bytes] = []

        async def write(data: bytes) -> None:
            sent.append(data)

        # The leader's stream ends after its opening beat, naming the leader.
        await asyncio.wait_for(serve_feed(leader, 0, write), 5)
        (beat,) = FeedDecoder().feed(b"".join(sent))
        assert isinstance(beat, Beat) and beat.leader == leader.address
    finally:
        for node in voters:
            node.stop()


STREAMS = 40


def _applying(copy: FeedState, decoder: FeedDecoder | None = None):
    decoder = decoder or FeedDecoder()

    async def write(data: bytes) -> None:
        for frame in decoder.feed(data):
            if isinstance(frame, Snapshot):
                copy.restore(frame)
            elif isinstance(frame, Entries):
                copy.apply(frame)

    return write


async def _all_equal(voter: RaftNode, copies: list[FeedState]) -> bool:
    for copy in copies:
        if not await _equal(voter, copy):
            return False
    return True


async def test_streams_in_step_share_one_encoded_frame_per_commit(voter, monkeypatch):
    """Each commit costs the voter one encode for every stream at its last index, not one per
    stream; a stream that cannot take its writes does not hold the others back, and ends once
    one write waited `stall` seconds."""
    from node.feed import serve

    encoded = 0
    real_encode = serve.encode

    def counting(frame: Frame) -> bytes:
        nonlocal encoded
        encoded += 1
        return real_encode(frame)

    monkeypatch.setattr(serve, "encode", counting)
    copies = [FeedState() for _ in range(STREAMS)]
    stuck = asyncio.Event()

    async def never_taken(data: bytes) -> None:
        await stuck.wait()

    servings = [asyncio.ensure_future(serve_feed(voter, 0, _applying(c))) for c in copies]
    slow = asyncio.ensure_future(serve_feed(voter, 0, never_taken, stall=1.0))
    try:
        await wait_for(lambda: _all_equal(voter, copies), timeout=10, what="the copies")
        before = encoded
        await _label(voter, 20, "shared")
        await wait_for(lambda: _all_equal(voter, copies), timeout=10, what="the copies again")
        assert (encoded - before) / 20 <= 3, f"{encoded - before} encodes for 20 commits"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slow, timeout=5)
    finally:
        for serving in [*servings, slow]:
            serving.cancel()
        await asyncio.gather(*servings, slow, return_exceptions=True)


async def test_commits_closer_together_than_a_frame_share_one(voter, monkeypatch):
    """A commit after a quiet spell goes out at once; the commits that follow it within
    the frame interval wait for the next frame and share it (each a frame of their own before)."""
    from node.feed import serve

    monkeypatch.setattr(serve, "FRAME_MIN", 3.0)
    monkeypatch.setattr(serve, "FRAME_MAX", 3.0)
    copy, decoder = FeedState(), FeedDecoder()
    entries: list[Entries] = []

    async def write(data: bytes) -> None:
        for frame in decoder.feed(data):
            if isinstance(frame, Entries):
                entries.append(frame)
                copy.apply(frame)
            elif isinstance(frame, Snapshot):
                copy.restore(frame)

    serving = asyncio.ensure_future(serve_feed(voter, 0, write))
    try:
        await wait_for(lambda: _equal(voter, copy), timeout=10, what="the copy")
        await asyncio.sleep(0.2)  # the clock's first wake is behind it
        await _label(voter, 1, "lone")
        # Well inside the interval: the lone commit did not wait for a frame's turn.
        await wait_for(lambda: _equal(voter, copy), timeout=2, what="the lone commit")
        before = len(entries)
        await _label(voter, 20, "run")
        await wait_for(lambda: _equal(voter, copy), timeout=10, what="the run of commits")
        assert len(entries) - before <= 2, f"{len(entries) - before} frames for 20 commits"
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


def test_the_frame_interval_grows_with_the_streams_within_its_bounds():
    from node.feed.serve import FRAME_MAX, FRAME_MIN, frame_interval

    assert frame_interval(0) == frame_interval(1) == FRAME_MIN
    assert FRAME_MIN < frame_interval(500) < FRAME_MAX
    assert frame_interval(500) == 2 * frame_interval(250)
    assert frame_interval(100_000) == FRAME_MAX
