"""The write load both control-plane benchmarks (Shoal and etcd) put on a cluster, so that
their figures come from the same client: one aiohttp session, N concurrent writers."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Awaitable, Callable

import aiohttp

# One committed write: (session, a number unique to this write) -> was it acknowledged?
Write = Callable[[aiohttp.ClientSession, int], Awaitable[bool]]


async def throughput(write: Write, clients: int, seconds: float) -> float:
    """Acknowledged writes per second with `clients` writers for `seconds`."""
    counter = itertools.count()
    done = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        async def client() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                if await write(session, next(counter)):
                    done += 1
        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        return done / (time.monotonic() - started)


async def latency(write: Write, count: int) -> list[float]:
    """Milliseconds of `count` sequential writes at low load; a refused write is an error."""
    samples = []
    async with aiohttp.ClientSession() as session:
        for n in range(count):
            started = time.perf_counter()
            if not await write(session, n):
                raise RuntimeError(f"write {n} was refused at low load")
            samples.append((time.perf_counter() - started) * 1000)
    return samples
