"""Concurrent proposals on the leader share Raft entries.

pysyncobj (as Shoal runs it: unbatched, for latency) makes every command its own log entry,
its own AppendEntries to each follower, its own answer and its own fdatasync on the follower.
`ProposalBatcher` keeps one round in flight: a proposal that finds no round running starts one
at once, alone (so a lone write waits for nothing), and proposals that arrive while a round
runs wait for it and then go together as the next round — one entry, one round trip, one
sync for all of them, each with its own result. Under load the batch grows to whatever
arrived during one round trip, up to `max_count` commands or `max_bytes`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

# Commits a list of encoded commands as one entry and returns their results, in order.
Submit = Callable[[list[bytes], float], Awaitable[list[Any]]]

# pysyncobj cuts an entry above 64 KiB into chunks sent one per message: stay below.
MAX_BYTES = 60 * 1024
MAX_COUNT = 256


class ProposalBatcher:
    def __init__(
        self, submit: Submit, *, max_bytes: int = MAX_BYTES, max_count: int = MAX_COUNT
    ) -> None:
        self._submit = submit
        self._max_bytes = max_bytes
        self._max_count = max_count
        self._queue: deque[tuple[bytes, float, asyncio.Future[Any]]] = deque()
        self._running = False
        self.rounds = 0

    async def propose(self, data: bytes, timeout: float) -> Any:
        """The result of committing `data`; raises what the round raised, or TimeoutError
        once `timeout` passed (the command may still commit: the outcome is unknown)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((data, timeout, future))
        if not self._running:
            self._running = True
            asyncio.ensure_future(self._run())
        async with asyncio.timeout(timeout):
            return await asyncio.shield(future)

    def _next_batch(self) -> list[tuple[bytes, float, asyncio.Future[Any]]]:
        batch = [self._queue.popleft()]
        size = len(batch[0][0])
        while self._queue and len(batch) < self._max_count:
            size += len(self._queue[0][0])
            if size > self._max_bytes:
                break
            batch.append(self._queue.popleft())
        return batch

    async def _run(self) -> None:
        try:
            while self._queue:
                await self._round(self._next_batch())
        finally:
            self._running = False

    async def _round(self, batch: list[tuple[bytes, float, asyncio.Future[Any]]]) -> None:
        self.rounds += 1
        try:
            results = await self._submit(
                [data for data, _, _ in batch], max(timeout for _, timeout, _ in batch)
            )
        except Exception as exc:  # every proposal of the round learns why it failed
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: a caller that timed out no longer awaits
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
