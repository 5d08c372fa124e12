"""A node started with `--lb-workers 2` serves its published ports from two proxy worker
processes; killing one loses no listener for more than a moment, and it is started again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from node.devcluster.localcluster import LocalCluster, wait_for
from tests.integration.mesh_support import create, remove_leftover_tasks
from tests.integration.test_mesh_process import SERVER

pytestmark = pytest.mark.timeout(120)

PUBLISHED = 18094


def worker_pids(node_pid: int) -> list[int]:
    """The node's children that are proxy workers."""
    children = []
    for task in Path(f"/proc/{node_pid}/task").iterdir():
        children += (task / "children").read_text().split()
    return [
        int(pid)
        for pid in children
        if b"netoverlay.lb.workers" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


async def fetch(address: str) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, PUBLISHED), 2)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 2)
        writer.close()
        return answer.startswith(b"HTTP/1.0 200")
    except (OSError, TimeoutError):
        return False


async def test_a_killed_proxy_worker_is_replaced_and_the_port_keeps_answering(tmp_path):
    cluster = LocalCluster(
        str(tmp_path), 1, ["--runtime", "process", "--lb-dataplane", "proxy", "--lb-workers", "2"]
    )
    try:
        await cluster.start()
        node = cluster.nodes[0]
        await create(
            cluster,
            {
                "name": "web",
                "image": "process",
                "command": [sys.executable, "-c", SERVER],
                "ports": [f"{PUBLISHED}:8000"],
            },
        )
        await wait_for(lambda: fetch(node.address), 60, "the service to answer via the mesh")
        assert node.proc is not None
        victim, survivor = worker_pids(node.proc.pid)
        os.kill(victim, signal.SIGKILL)

        async def gone() -> bool:
            # A kill is delivered asynchronously: a connection the kernel queues on the
            # victim's socket before it has closed it is reset with it (SO_REUSEPORT spreads
            # by hash), which is the kill, not the mesh. Count from its reaping on: a killed
            # process's leader shows as a zombie while its other threads still hold its
            # files (its listener among them); it is reaped only after the last one exits.
            return not Path(f"/proc/{victim}").exists()

        await wait_for(gone, 10, "the killed worker to be reaped")
        answers = [await fetch(node.address) for _ in range(20)]
        assert all(answers), answers

        async def replaced() -> bool:
            pids = worker_pids(node.proc.pid)
            return len(pids) == 2 and survivor in pids and victim not in pids

        await wait_for(replaced, 10, "the killed worker to be started again")
    finally:
        cluster.stop()
        await remove_leftover_tasks(cluster)
        print(cluster.logs())
