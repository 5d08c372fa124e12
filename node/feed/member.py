"""A member's side of the feed: follow one voter's stream and apply it with the voters' state
machine (consensus.feed_state), in place of a Raft replica (consensus.follower).

The voter is chosen by rendezvous hash of this node's id, so members spread over the voters
and each returns to the same one; on a failure the member moves to the next in its order and
resumes from the index it has applied. Stale reads are served from the local copy; a
linearizable read asks a voter for a read index (confirmed by the leader) and waits
until the feed has applied it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence

from consensus.feed_state import FeedState
from consensus.feed_wire import Beat, Entries, FeedDecoder, FeedError, Snapshot
from consensus.model import Node
from consensus.nodes import nodes
from consensus.raft import NoQuorum, RaftStatus, SyncProgress
from consensus.state import ClusterState
from consensus.store import StateVersion
from node.client import ApiError, ShoalClient, Unreachable
from node.feed.serve import BEAT_EVERY, FEED_PATH, READ_INDEX_PATH
from node.feed.stats import FEED_COUNTS

log = logging.getLogger(__name__)

# A stream that brought nothing (not even a beat) for this long is dead: move on.
SILENCE = 4 * BEAT_EVERY
RETRY_PAUSE = 0.5


def voter_order(node_id: str, voters: Sequence[str]) -> list[str]:
    """`voters` (API addresses) in this node's order of preference: rendezvous hashing, so
    members spread evenly and a voter's loss moves only its own members."""
    return sorted(set(voters), key=lambda api: hashlib.sha256(f"{node_id}|{api}".encode()).digest())


def next_voter(
    order: Sequence[str], failed: str | None, leader: str | None, failures: int = 0
) -> str:
    """Of `order` (not empty), the voter to follow next: the one after the voter that failed
    last, so that a dead one is not asked twice running, passing over the leader: the leader
    of several voters refuses the feed, and each refusal costs it a TLS handshake (a third of
    the members of a failed voter would ask it first). Only until every other voter failed in
    a row (`failures`): the leader this member knows of may no longer lead, and may be the one
    voter left that serves it."""
    start = order.index(failed) + 1 if failed in order else 0
    turn = [*order[start:], *order[:start]]
    if failures >= len(order) - 1:
        return turn[0]
    return next((api for api in turn if api != leader), turn[0])


class FeedMember:
    def __init__(
        self,
        voters: list[str],
        notify: Callable[[], None],
        *,
        node_id: str,
        remembered_apis: Callable[[], Sequence[str]],
        client_at: Callable[[str], ShoalClient],
        unsupported: Callable[[], None],
    ) -> None:
        """`voters`: the voters' Raft addresses; `remembered_apis`: voter API addresses to
        try while this copy holds no node table yet (a node that just joined); `unsupported`
        is called, and the follower stops, when a voter serves no feed (an older release)."""
        self._voters = tuple(voters)
        self._notify = notify
        self._node_id = node_id
        self._remembered = remembered_apis
        self._client_at = client_at
        self._unsupported = unsupported
        self._copy = FeedState()
        self._leader: str | None = None
        self._term = 0
        self._voter_applied: int | None = None
        self._target: int | None = None
        self._caught_up = False
        self._following: str | None = None
        # Failures since a voter last sent a frame, and the voter that failed last.
        self._failures = 0
        self._failed: str | None = None
        # The Raft address of each voter's API address, as the copy's node table names them.
        self._raft_of: dict[str, str] = {}
        self._nodes_seen: Mapping[str, Node] | None = None
        # Voters' API addresses a member told this node, while its copy names none.
        self._discovered: list[str] = []
        self._task = asyncio.ensure_future(self._run())

    # -- what RaftNode asks (consensus.follower.Follower) -------------------------------
    @property
    def version(self) -> StateVersion:
        return self._copy.version

    def leader(self) -> str | None:
        return self._leader

    def progress(self) -> SyncProgress:
        return SyncProgress(self._caught_up, self._leader, self._copy.applied, self._voter_applied)

    def status(self) -> RaftStatus:
        following = () if self._following is None else (self._raft_of.get(self._following, ""),)
        return RaftStatus(
            role="member",
            is_leader=False,
            leader=self._leader,
            term=self._term,
            commit_index=self._voter_applied or 0,
            last_applied=self._copy.applied,
            has_quorum=self._following is not None and self._leader is not None,
            partners=tuple(sorted(self._voters)),
            connected_partners=following,
        )

    async def read_index(self, timeout: float) -> int:
        """A read index from the voter this member follows, or from the others in turn; each
        but the last may take half the time left, so a paused voter does not use it all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = "no voter known"
        order = self._order()
        for position, api in enumerate(order):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining / (1 if position == len(order) - 1 else 2)):
                    answer = await self._client_at(api).get(READ_INDEX_PATH)
                return int(answer["index"])
            except (ApiError, Unreachable, TimeoutError, KeyError, TypeError, ValueError) as exc:
                last = f"{api}: {exc}"
        raise NoQuorum(f"no voter gave a read index within {timeout:g} s ({last})")

    def stop(self) -> None:
        self._task.cancel()
        self._following = None

    # -- following ------------------------------------------------------------------------
    def _candidates(self) -> list[str]:
        """The voters' API addresses in this node's order: those the copy calls voters, else
        those of the voters it was started with, else the remembered ones."""
        with self._copy.version as state:
            table = nodes(state)
        # Asked on every linearizable read: the node table is walked only when it changed (a
        # version shares an unchanged table with the one before).
        if table is not self._nodes_seen:
            self._nodes_seen = table
            wanted = set(self._voters)
            voters = [n for n in table.values() if n.role == "voter"]
            voters = voters or [n for n in table.values() if n.raft_address in wanted]
            self._raft_of = {n.api_address: n.raft_address for n in voters}
        apis = list(self._raft_of)
        return voter_order(self._node_id, apis or self._discovered or self._remembered())

    async def _discover(self, api: str) -> None:
        """A node that joined through a member knows only that member: ask it, from its
        copy, where the voters are."""
        try:
            listed = await self._client_at(api).get("/v1/nodes", stale="1")
            self._discovered = [
                f"{n['address']}:{n['api_port']}" for n in listed if n.get("role") == "voter"
            ]
        except (ApiError, Unreachable, KeyError, TypeError) as exc:
            log.info("feed: could not ask %s where the voters are: %s", api, exc)

    def _order(self) -> list[str]:
        """For a read index: the voter that serves this member now first."""
        ordered = self._candidates()
        if self._following in ordered:
            ordered.remove(self._following)
            ordered.insert(0, self._following)
        return ordered

    async def _run(self) -> None:
        while True:
            order = self._candidates()
            if not order:
                log.warning("feed: no voter known to follow; retrying")
                await asyncio.sleep(RETRY_PAUSE)
                continue
            leader = next((a for a, r in self._raft_of.items() if r == self._leader), None)
            api = next_voter(order, self._failed, leader, self._failures)
            try:
                await self._follow(api)
            except ApiError as exc:
                log.info("feed from %s refused: %s", api, exc)
                if exc.status == 404:  # a voter of a release before the feed
                    self._unsupported()
                    return
                if exc.status == 409 and not self._raft_of:
                    await self._discover(api)
            except (FeedError, Unreachable) as exc:
                log.info("feed from %s ended: %s", api, exc)
            except Exception:  # a frame this copy could not apply must not end the following
                log.exception("feed from %s failed", api)
            self._following, self._failed = None, api
            self._failures += 1
            self._notify()
            await asyncio.sleep(RETRY_PAUSE if self._failures >= len(order) else 0.0)

    async def _follow(self, api: str) -> None:
        decoder = FeedDecoder()
        stream = self._client_at(api).stream_chunks(
            FEED_PATH, {"after": str(self._copy.applied)}, read_timeout=SILENCE
        )
        async with contextlib.aclosing(stream):
            async for chunk in stream:
                for frame in decoder.feed(chunk):
                    if self._following != api:
                        self._following = api
                        log.info("feed: following %s from index %d", api, self._copy.applied)
                    self._failures = 0
                    decoded = None
                    if isinstance(frame, Snapshot):  # a whole state: decoded off the loop
                        decoded = await asyncio.to_thread(ClusterState.from_msgpack, frame.state)
                    self._on_frame(frame, decoded)
                await asyncio.sleep(0)  # a long catch-up must not hold the event loop

    def _on_frame(self, frame: Beat | Snapshot | Entries, decoded: ClusterState | None) -> None:
        if isinstance(frame, Beat):
            changed = (frame.leader, frame.term) != (self._leader, self._term)
            self._leader, self._term = frame.leader, frame.term
            self._voter_applied = max(self._voter_applied or 0, frame.applied)
            if self._target is None:
                self._target = frame.applied
        elif isinstance(frame, Snapshot):
            self._copy.restore(frame, decoded)
            FEED_COUNTS.snapshots_restored += 1
            log.info("feed: restored a snapshot at index %d", frame.applied)
            changed = True
        else:
            self._copy.apply(frame)
            self._voter_applied = max(self._voter_applied or 0, self._copy.applied)
            changed = True
        if not self._caught_up and self._target is not None and self._copy.applied >= self._target:
            self._caught_up = True
            log.info("feed: caught up with the cluster at index %d", self._copy.applied)
        if changed:
            self._notify()
