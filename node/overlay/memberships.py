"""Which overlay networks each of this node's tasks is on, by its address on each, as the
container engine says: the network-side DNS asks it who sends a query, so a task on several
networks resolves the names of all of them.

Read from the engine on every overlay sync, and at once when a task this node does not know
yet asks (a task may ask in its first millisecond, before anything announced it). An address
no task holds is read again at most every `MISS_INTERVAL`, so a stray sender cannot make
every query an engine call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

MISS_INTERVAL = 1.0
# Addresses remembered as held by no task; past this the memory starts afresh.
MAX_MISSES = 1024

Attachments = dict[tuple[str, str], tuple[str, ...]]


class EngineMemberships:
    """`netoverlay.overlay.resolver.Memberships` read from the engine by `read` (blocking)."""

    def __init__(
        self, read: Callable[[], Attachments], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._read = read
        self._clock = clock
        self._known: Attachments = {}
        self._missed: dict[tuple[str, str], float] = {}
        self._lock = asyncio.Lock()
        self._reads_started = 0

    def known(self, network: str, address: str) -> tuple[str, ...] | None:
        return self._known.get((network, address))

    async def find(self, network: str, address: str) -> tuple[str, ...]:
        key = (network, address)
        missed = self._missed.get(key)
        if key not in self._known and (missed is None or self._clock() - missed >= MISS_INTERVAL):
            await self.reload()
            if key not in self._known:
                if len(self._missed) >= MAX_MISSES:
                    self._missed.clear()
                self._missed[key] = self._clock()
        return self._known.get(key, (network,))

    async def reload(self) -> None:
        """Read the engine afresh, unless a read that started after this call already did."""
        ticket = self._reads_started
        async with self._lock:
            if self._reads_started > ticket:  # it started after this call, and it is done
                return
            self._reads_started += 1
            self._known = await asyncio.to_thread(self._read)
