"""A voter's side of the feed: one long-lived stream per member, on the internal API.

Followers serve it, so that the leader's event loop stays on the writes (the leader serves it
only while it is the one voter). A stream opens with a beat (the leader, the term, how far this voter has applied), then
sends the entries after the member's index from the voter's ring, or a snapshot when the
ring no longer holds them, then every entry as it is applied, and a beat whenever the
leader changes and every BEAT_EVERY seconds. A voter sends at most one frame of entries per
`frame_interval` (longer the more streams it serves): commits closer together share a frame, so
under a stream of writes a voter's feed costs it a bounded share of a core, not a send per
stream per write. Back-pressure: a write that the member does
not take within STALL seconds ends its stream, so a slow member costs a voter at most one
batch and the socket's buffer; it reconnects and resumes from its index. The streams of one
voter share its `FeedClock`: one wake and one encoded frame per commit for all the streams
in step with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import web

from consensus.feed_ring import FeedSource
from consensus.feed_wire import Beat, Entries, Snapshot, encode
from consensus.raft import RaftStatus
from node.api.consistency import parse_index
from node.api.context import NODE
from node.api.guard import calling_node
from node.api.http_util import HttpError
from node.api.listen import hold_as_stream
from node.feed.stats import FEED_COUNTS

log = logging.getLogger(__name__)

FEED_PATH = "/v1/internal/feed"
READ_INDEX_PATH = "/v1/internal/read-index"
FEED_TYPE = "application/x-shoal-feed"
BEAT_EVERY = 1.0
# The shortest time between two frames of entries, per stream the voter serves, within bounds.
# A commit after a quiet spell goes out at once; under writes, a frame carries the commits of
# up to this long. Each frame costs a voter a TLS write per stream (about 28 us each here, with
# 500 streams), ahead of its Raft thread's answers to the leader: at one frame per commit a
# follower of 1,000 members spent 7.7 ms of CPU per write, more than the write itself costs
# the leader. 200 us per stream keeps the feed under about a seventh of a core however fast
# the writes come; the bounds keep a small cluster prompt and a large one under 0.25 s behind.
FRAME_PER_STREAM = 0.0002
FRAME_MIN = 0.005
FRAME_MAX = 0.25

STALL = 10.0
# Entries per frame: one write per burst of commits rather than one per command.
BATCH = 512
SNAPSHOT_TIMEOUT = 10.0


def frame_interval(streams: int) -> float:
    """The shortest time between two frames of entries for a voter serving `streams`."""
    return min(FRAME_MAX, max(FRAME_MIN, streams * FRAME_PER_STREAM))


routes = web.RouteTableDef()


class Voter(Protocol):
    @property
    def role(self) -> str: ...

    feed_source: FeedSource
    version: int

    def applied(self) -> int: ...
    def is_leader(self) -> bool: ...
    def leader(self) -> str | None: ...
    def status(self) -> RaftStatus: ...
    async def wait_changed(self, seen_version: int, timeout: float | None = None) -> int: ...


def serves_feed(voter: Voter) -> bool:
    """A voter serves the feed, except the leader while other voters can: every stream it
    serves costs its event loop a send per commit, ahead of the writes it answers."""
    return voter.role == "voter" and not (voter.is_leader() and voter.status().partners)


async def serve_feed(
    voter: Voter, after: int, write: Callable[[bytes], Awaitable[None]], stall: float = STALL
) -> None:
    """Send the feed from `after` until this node stops voting or `write` fails; TimeoutError
    when one write is not taken within `stall` seconds.

    A stream at the voter's last index sends each commit as the frame its voter's clock
    encoded once for every such stream (`FeedClock`); one that is behind (it just connected,
    or a write made it wait) catches up from the ring on its own, then joins them."""
    source = voter.feed_source

    async def send(data: bytes) -> None:
        async with asyncio.timeout(stall):
            await write(data)

    cursor = after
    await send(encode(Beat(voter.leader(), voter.status().term, voter.applied())))
    with _clock_of(voter).stream(voter) as clock:
        tick = clock.latest
        while tick.serving:
            if tick.entries and cursor == tick.after:
                await send(tick.entries)
                cursor = tick.last
            # Behind the clock (just connected, or a write made it wait): catch up on its own
            # as far as the clock is, not further, so that the next tick finds it in step.
            while cursor < tick.last:
                entries = source.ring.after(cursor, BATCH)
                if entries is None:
                    try:
                        snapshot = await _shared_snapshot(source)
                    except TimeoutError:  # the replica stopped (a role change): move on
                        log.info(
                            "feed: no snapshot within %g s; ending the stream", SNAPSHOT_TIMEOUT
                        )
                        return
                    await send(encode(snapshot))
                    FEED_COUNTS.snapshots_sent += 1
                    cursor = snapshot.applied
                elif entries:
                    await send(_entries_frame(entries))
                    cursor = entries[-1][0]
                else:  # the ring starts afresh below this index (a snapshot restored)
                    break
            if tick.beat:
                await send(tick.beat)
            tick = await clock.newer_than(tick)


def _entries_frame(entries: list[tuple[int, bytes]]) -> bytes:
    """The encoded frame of consecutive ring entries (index, command), oldest first."""
    return encode(Entries(entries[0][0], tuple(command for _, command in entries)))


@dataclass(frozen=True, slots=True)
class Tick:
    """One wake of a voter's feed: the entries applied after `after` up to `last` as one
    encoded frame (empty when there were none, or more than one frame holds), a beat when
    one is due (the leader changed, or BEAT_EVERY passed), and whether the voter still
    serves the feed (its streams end when it does not)."""

    after: int
    last: int
    entries: bytes = b""
    beat: bytes = b""
    serving: bool = True


class FeedClock:
    """One per voter while it has streams: wakes once per change of the voter's state (or
    BEAT_EVERY) and encodes what every stream at the voter's last index sends, so a commit
    costs the voter one encode and one wake per stream, not a wait, a ring copy, an encode
    and a status each (with 500 streams per voter a follower spent its core on them)."""

    def __init__(self, last: int) -> None:
        self.latest = Tick(last, last)
        self._waiters: list[asyncio.Future[None]] = []
        self._streams = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @contextlib.contextmanager
    def stream(self, voter: Voter) -> Iterator[FeedClock]:
        self._streams += 1
        if not self.running:  # only a running clock holds its voter (and so its ring)
            self._task = asyncio.ensure_future(self._run(voter))
        try:
            yield self
        finally:
            self._streams -= 1

    async def newer_than(self, tick: Tick) -> Tick:
        """The latest tick, once there is one newer than `tick` (each waiter has a future of
        its own: a stream cancelled while it waits cancels no other)."""
        if self.latest is tick:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        return self.latest

    def _publish(self, tick: Tick) -> None:
        self.latest = tick
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _run(self, voter: Voter) -> None:
        ring = voter.feed_source.ring
        loop = asyncio.get_running_loop()
        seen = voter.version
        leader = voter.leader()
        beat_due = loop.time() + BEAT_EVERY
        frame_due = loop.time()
        try:
            while self._streams > 0:
                seen = await voter.wait_changed(seen, timeout=max(0.0, beat_due - loop.time()))
                if ring.last > self.latest.last and (wait := frame_due - loop.time()) > 0:
                    # Too soon after the last frame: the commits of the wait join this one.
                    # (The version is read before the ring, so a commit in between wakes
                    # the clock again rather than waiting unseen.)
                    await asyncio.sleep(wait)
                    seen = voter.version
                if not serves_feed(voter):
                    self._publish(Tick(self.latest.last, self.latest.last, serving=False))
                    return
                after, last = self.latest.last, ring.last
                entries = ring.after(after, BATCH) if last > after else []
                frame = _entries_frame(entries) if entries and entries[-1][0] == last else b""
                beat = b""
                if (now_leader := voter.leader()) != leader or loop.time() >= beat_due:
                    leader = now_leader
                    beat = encode(Beat(leader, voter.status().term, voter.applied()))
                    beat_due = loop.time() + BEAT_EVERY
                if last != after or beat:  # else nothing for a stream to do: let them sleep
                    self._publish(Tick(after, last, frame, beat))
                if last != after:
                    frame_due = loop.time() + frame_interval(self._streams)
        finally:
            if self.latest.serving:  # streams still waiting must not wait for ever
                self._publish(Tick(self.latest.last, self.latest.last, serving=False))


_clocks: weakref.WeakKeyDictionary[FeedSource, FeedClock] = weakref.WeakKeyDictionary()


def _clock_of(voter: Voter) -> FeedClock:
    clock = _clocks.get(voter.feed_source)
    if clock is None or (not clock.running and not clock.latest.serving):
        clock = _clocks[voter.feed_source] = FeedClock(voter.feed_source.ring.last)
    return clock


# The snapshot being made for each voter's feed: streams that need one while it is made share
# it, so members reconnecting together (their voter failed) cost one serialization, not one each.
_making: weakref.WeakKeyDictionary[FeedSource, asyncio.Future[Snapshot]] = (
    weakref.WeakKeyDictionary()
)


async def _shared_snapshot(source: FeedSource) -> Snapshot:
    making = _making.get(source)
    if making is None or making.done():
        making = _making[source] = asyncio.ensure_future(_make_snapshot(source))
        # Its failure is each waiting stream's to report; none may be left waiting.
        making.add_done_callback(lambda done: done.cancelled() or done.exception())
    return await asyncio.shield(making)


async def _make_snapshot(source: FeedSource) -> Snapshot:
    async with asyncio.timeout(SNAPSHOT_TIMEOUT):
        copy = await source.snapshot()
    return Snapshot(copy.applied, await asyncio.to_thread(copy.to_msgpack))


@routes.get(FEED_PATH)
async def feed(request: web.Request) -> web.StreamResponse:
    shoal = request.app[NODE]
    caller = calling_node(request, shoal.store.view)
    after = parse_index(request.query.get("after", "0"))
    if not serves_feed(shoal.raft):
        raise HttpError(
            409, "this node serves no feed (a member, or the leader): ask another voter"
        )
    if not hold_as_stream(request):
        raise HttpError(503, "this voter serves as many feed streams as it may: ask another voter")
    response = web.StreamResponse(headers={"Content-Type": FEED_TYPE})
    await response.prepare(request)
    FEED_COUNTS.streams += 1
    try:
        await serve_feed(shoal.raft, after, response.write)
    except TimeoutError:
        FEED_COUNTS.dropped_slow += 1
        log.info("feed: %s did not keep up; dropped it (it resumes from its index)", caller.name)
    except (ConnectionError, OSError, RuntimeError, aiohttp.ClientError):  # the member went away
        pass
    finally:
        FEED_COUNTS.streams -= 1
    return response


@routes.get(READ_INDEX_PATH)
async def read_index(request: web.Request) -> web.Response:
    """A read index for a member's linearizable read (RaftNode.read_index on this voter)."""
    shoal = request.app[NODE]
    calling_node(request, shoal.store.view)
    if shoal.raft.role != "voter":
        raise HttpError(409, "this node does not vote: ask a voter for a read index")
    return web.json_response({"index": await shoal.raft.read_index()})
