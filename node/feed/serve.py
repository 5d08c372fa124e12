"""A voter's side of the feed: one long-lived stream per member, on the internal API.

Followers serve it, so that the leader's event loop stays on the writes (the leader serves it
only while it is the one voter). A stream opens with a beat (the leader, the term, how far this voter has applied), then
sends the entries after the member's index from the voter's ring, or a snapshot when the
ring no longer holds them, then every entry as it is applied, and a beat whenever the
leader changes and every BEAT_EVERY seconds. Back-pressure: a write that the member does
not take within STALL seconds ends its stream, so a slow member costs a voter at most one
batch and the socket's buffer; it reconnects and resumes from its index.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp
from aiohttp import web

from consensus.feed_ring import FeedSource
from consensus.feed_wire import Beat, Entries, Frame, Snapshot, encode
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
STALL = 10.0
# Entries per frame: one write per burst of commits rather than one per command.
BATCH = 512
SNAPSHOT_TIMEOUT = 10.0

routes = web.RouteTableDef()


class Voter(Protocol):
    role: str
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
    when one write is not taken within `stall` seconds."""
    source = voter.feed_source

    async def send(frame: Frame) -> None:
        async with asyncio.timeout(stall):
            await write(encode(frame))

    cursor = after
    beat = Beat(voter.leader(), voter.status().term, voter.applied())
    await send(beat)
    loop = asyncio.get_running_loop()
    beat_due = loop.time() + BEAT_EVERY
    seen = voter.version
    while serves_feed(voter):
        entries = source.ring.after(cursor, BATCH)
        if entries is None:
            try:
                snapshot = await _shared_snapshot(source)
            except TimeoutError:  # the replica stopped (a role change): the member moves on
                log.info("feed: no snapshot within %g s; ending the stream", SNAPSHOT_TIMEOUT)
                return
            await send(snapshot)
            FEED_COUNTS.snapshots_sent += 1
            cursor = snapshot.applied
            continue
        if entries:
            await send(Entries(entries[0][0], tuple(command for _, command in entries)))
            cursor = entries[-1][0]
            continue
        now = Beat(voter.leader(), beat.term, voter.applied())
        if now.leader != beat.leader or loop.time() >= beat_due:
            beat = Beat(now.leader, voter.status().term, now.applied)
            await send(beat)
            beat_due = loop.time() + BEAT_EVERY
        seen = await voter.wait_changed(seen, timeout=max(0.0, beat_due - loop.time()))


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
