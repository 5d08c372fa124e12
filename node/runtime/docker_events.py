"""One Docker events stream per driver that wakes every `wait` when its container dies.

A waiter per container would hold an HTTP connection and a thread each; one stream filtered
to this node's containers serves them all. The stream is read on a thread of the driver's
stream executor and hands events to the loop with `call_soon_threadsafe`. When the stream
ends (the daemon restarted, the driver closed) every waiter is woken to look again, and the
next `subscribe` opens a new stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from concurrent.futures import Executor
from typing import Any

from node.runtime.docker_sdk import docker
from node.runtime.model import LABEL_NODE, LABEL_TASK

log = logging.getLogger(__name__)


class DeathEvents:
    def __init__(self, client: docker.DockerClient, node_id: str, executor: Executor) -> None:
        self._client = client
        self._node_id = node_id
        self._executor = executor
        self._stream: Any = None
        self._reader: asyncio.Future | None = None
        self._waiters: defaultdict[str, set[asyncio.Future]] = defaultdict(set)
        self._opening = asyncio.Lock()

    async def subscribe(self, task_id: str) -> asyncio.Future:
        """A future that resolves at the next death of `task_id`'s container (or when the
        stream ends). The stream is live when this returns: inspect after it, not before,
        and no death can slip between the two."""
        async with self._opening:
            if self._stream is None:
                await self._open()
        future = asyncio.get_running_loop().create_future()
        self._waiters[task_id].add(future)
        future.add_done_callback(lambda f: self._forget(task_id, f))
        return future

    async def _open(self) -> None:
        filters = {"type": "container", "event": "die", "label": f"{LABEL_NODE}={self._node_id}"}
        # Returns once the daemon has answered the request: from then on no event is missed.
        self._stream = await asyncio.to_thread(self._client.events, filters=filters, decode=True)
        loop = asyncio.get_running_loop()
        self._reader = loop.run_in_executor(self._executor, self._read, self._stream, loop)
        self._reader.add_done_callback(self._ended)

    def _read(self, stream: Any, loop: asyncio.AbstractEventLoop) -> None:
        for event in stream:
            loop.call_soon_threadsafe(self._died, event)

    def _died(self, event: dict) -> None:
        task_id = ((event.get("Actor") or {}).get("Attributes") or {}).get(LABEL_TASK)
        for future in list(self._waiters.get(task_id, ())):
            if not future.done():
                future.set_result(None)

    def _ended(self, reader: asyncio.Future) -> None:
        if not reader.cancelled() and reader.exception() is not None:
            log.warning("docker events stream failed: %s", reader.exception())
        self._stream = None
        self._reader = None
        for futures in list(self._waiters.values()):
            for future in list(futures):
                if not future.done():
                    future.set_result(None)

    def _forget(self, task_id: str, future: asyncio.Future) -> None:
        futures = self._waiters.get(task_id)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._waiters[task_id]

    async def aclose(self, timeout: float = 5.0) -> None:
        stream, reader = self._stream, self._reader
        if stream is None:
            return
        stream.close()  # unblocks the reading thread
        if reader is not None:
            await asyncio.wait([reader], timeout=timeout)
