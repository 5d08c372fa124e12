"""The proxy on every core: worker processes sharing each published port (SO_REUSEPORT),
fed the same table, restarted when they die, with no gap in accepting while one is down."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import pytest

from netoverlay.lb.proxy import ProxyConfig
from netoverlay.lb.types import Backend, ServicePort
from netoverlay.lb.workers import WorkerPool

pytestmark = pytest.mark.timeout(60)

LISTEN = "127.0.0.1"
BACKEND = "127.0.0.41"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def ask(port: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(LISTEN, port), 2)
    try:
        return await asyncio.wait_for(reader.readline(), 2)
    finally:
        writer.close()


async def test_killing_a_worker_loses_no_listener_and_it_comes_back():
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()

    backend = await asyncio.start_server(greet, BACKEND, 0)
    published = free_port(LISTEN)
    table = (
        [ServicePort("web", published, 80)],
        {"web": [Backend("web", "t1", "n1", BACKEND, backend.sockets[0].getsockname()[1])]},
    )
    pool = WorkerPool(ProxyConfig(host=LISTEN), 2, restart_delay=0.5)
    await pool.start()
    try:
        await pool.sync(*table)
        assert pool.failed_ports == {}
        assert [await ask(published) for _ in range(20)] == [b"hello\n"] * 20
        await asyncio.sleep(1.2)  # the workers report their counters every second
        before = pool.stats()[published].connections_total

        victim, survivor = pool.pids()
        os.kill(victim, signal.SIGKILL)
        # While the victim is down (restart_delay), the survivor's listener takes everything.
        await asyncio.sleep(0.1)
        assert [await ask(published) for _ in range(20)] == [b"hello\n"] * 20

        for _ in range(50):  # restarted, with the latest table
            if pool.restarts == 1 and len(pool.pids()) == 2 and victim not in pool.pids():
                break
            await asyncio.sleep(0.1)
        assert pool.restarts == 1 and survivor in pool.pids()
        await pool.sync(*table)
        assert pool.failed_ports == {}
        assert [await ask(published) for _ in range(20)] == [b"hello\n"] * 20
        await asyncio.sleep(1.2)
        # The victim's counts stay in the totals: they never go backwards.
        assert pool.stats()[published].connections_total >= before + 40
    finally:
        await pool.stop()
        backend.close()
