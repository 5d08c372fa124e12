"""Counts each new Raft leader this node learns of (the `shoal_raft_leader_changes`
metric)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import Counter


class LeaderChangeLoop:
    def __init__(
        self, counter: Counter, changed: asyncio.Event, leader: Callable[[], str | None]
    ) -> None:
        """`changed` is set on every Raft change, leadership changes included."""
        self._counter = counter
        self._changed = changed
        self._leader = leader

    async def run(self) -> None:
        last = self._leader()
        while True:
            await self._changed.wait()
            self._changed.clear()
            current = self._leader()
            if current is not None and current != last:
                self._counter.inc()
            if current is not None:
                last = current
