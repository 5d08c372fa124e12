"""Passes one event on to another at most once per interval: a burst of commits becomes one
wake-up (and one scheduling round) instead of one per commit."""

from __future__ import annotations

import asyncio


class RateLimitedWake:
    def __init__(self, source: asyncio.Event, target: asyncio.Event, interval: float) -> None:
        self._source = source
        self._target = target
        self._interval = interval

    async def run(self) -> None:
        while True:
            await self._source.wait()
            self._source.clear()
            self._target.set()
            await asyncio.sleep(self._interval)
