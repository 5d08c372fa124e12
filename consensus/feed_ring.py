"""The recent applied commands a voter keeps for the members that follow its feed.

The Raft thread appends each command as its state machine applies it; the feed's streams,
on the event loop, take copies of the entries after a member's index. Indexes are the
state's `applied` counter: entry n is the command that took the state from n - 1 to n, so a
member that applies entries n + 1, n + 2, ... onto a state at n holds exactly the voter's.
Bounded by count and by bytes; a member whose index fell out gets a snapshot instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from contextlib import suppress

from consensus.state import ClusterState

# Enough for a member away for tens of seconds under a steady write load, and a bound on
# what the ring costs a voter (each entry is one encoded command, usually under 1 KiB).
RING_ENTRIES = 50_000
RING_BYTES = 64 << 20


class AppliedRing:
    """Entries (index, command) of consecutive indexes, oldest dropped first. Thread-safe:
    one writer (the Raft thread), any number of readers; every critical section is short."""

    def __init__(self, max_entries: int = RING_ENTRIES, max_bytes: int = RING_BYTES) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("an applied ring holds at least one entry and one byte")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: deque[tuple[int, bytes]] = deque()
        self._bytes = 0
        # The index of the last command applied, kept when the ring is empty.
        self._last = 0
        self._lock = threading.Lock()

    def append(self, index: int, command: bytes) -> None:
        """Record the command that took the state to `index`. An index that does not follow
        the last (a snapshot restored in between) starts the ring afresh."""
        with self._lock:
            if index != self._last + 1:
                self._entries.clear()
                self._bytes = 0
            self._entries.append((index, command))
            self._bytes += len(command)
            self._last = index
            while len(self._entries) > self._max_entries or (
                self._bytes > self._max_bytes and len(self._entries) > 1
            ):
                _, dropped = self._entries.popleft()
                self._bytes -= len(dropped)

    def restart_at(self, index: int) -> None:
        """The state jumped to `index` (a snapshot was restored): nothing before it is kept."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._last = index

    @property
    def last(self) -> int:
        return self._last

    def after(self, index: int, limit: int) -> list[tuple[int, bytes]] | None:
        """Up to `limit` entries following `index`, oldest first: [] when nothing follows it
        yet (or `index` is ahead of this ring), None when the entry after `index` is no longer
        held (the caller sends a snapshot)."""
        with self._lock:
            if index >= self._last:
                return []
            if not self._entries or self._entries[0][0] > index + 1:
                return None
            start = index + 1 - self._entries[0][0]
            return [self._entries[i] for i in range(start, min(start + limit, len(self._entries)))]


class FeedSource:
    """What a voter's Raft thread hands its feed: every applied command (the ring), and on
    request a copy of the whole live state, the record of answered requests included (so a
    member restored from it deduplicates a retried write exactly as the voters do). The copy
    is taken on the Raft thread at a tick, between two applies, so it is exactly the state
    after `applied` commands; the caller serialises it elsewhere."""

    def __init__(self, ring: AppliedRing | None = None) -> None:
        self.ring = ring or AppliedRing()
        self._asked: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[ClusterState]]] = []
        self._asked_lock = threading.Lock()

    def snapshot(self) -> asyncio.Future[ClusterState]:
        """A future of a copy of the live state, answered at the Raft thread's next tick."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ClusterState] = loop.create_future()
        with self._asked_lock:
            self._asked.append((loop, future))
        return future

    def on_tick(self, state: ClusterState) -> None:
        """On the Raft thread: answer every pending request with one copy of `state`."""
        if not self._asked:
            return
        with self._asked_lock:
            asked, self._asked = self._asked, []
        copy = state.detached()
        for loop, future in asked:
            with suppress(RuntimeError):  # its loop closed meanwhile
                loop.call_soon_threadsafe(_answer, future, copy)


def _answer(future: asyncio.Future[ClusterState], copy: ClusterState) -> None:
    if not future.done():
        future.set_result(copy)
