"""`shoal node ls -f` and `shoal service ls -f` on a real one-node cluster: each listing is
shown again when what it holds changes, through blocking queries, until Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from node.devcluster.localcluster import LocalCluster
from tests.integration.cluster_support import remove_task_processes, stop_nodes

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalCluster(str(tmp_path_factory.mktemp("follow")), 1, ["--runtime", "process"])
    try:
        asyncio.run(cluster.start())
        yield cluster
    finally:
        stop_nodes(cluster)
        asyncio.run(remove_task_processes(cluster))


async def _follow(cluster: LocalCluster, *argv: str) -> asyncio.subprocess.Process:
    node = cluster.nodes[0]
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "node", *argv, "--addr", node.api, "-f"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, SHOAL_TOKEN=node.api_token, SHOAL_CA=node.ca_file),
    )


async def _until(proc: asyncio.subprocess.Process, text: str, timeout: float = 15.0) -> int:
    """Read lines until one holds `text`; returns how many listings (header lines) came."""
    headers = 0
    async with asyncio.timeout(timeout):
        while line := (await proc.stdout.readline()).decode():
            headers += line.startswith(("ID ", "ID\t"))
            if text in line:
                return headers
    raise AssertionError(f"the output ended before {text!r}: {await proc.stderr.read()!r}")


async def _interrupt(proc: asyncio.subprocess.Process) -> None:
    try:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 130
        assert b"Traceback" not in await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_node_ls_follows_a_label_change(cluster):
    watch = await _follow(cluster, "node", "ls")
    try:
        assert await _until(watch, cluster.nodes[0].name) == 1
        await asyncio.sleep(0.5)  # it now waits in a blocking query
        async with cluster.nodes[0].client() as client:
            await client.patch(
                f"/v1/nodes/{cluster.nodes[0].name}", {"add_labels": {"seen": "yes"}}
            )
        assert await _until(watch, "seen=yes", timeout=5) == 1  # one more listing, at once
    finally:
        await _interrupt(watch)


async def test_service_ls_follows_a_new_service(cluster):
    watch = await _follow(cluster, "service", "ls")
    try:
        await _until(watch, "NAME")
        async with cluster.nodes[0].client() as client:
            await client.post(
                "/v1/services", {"name": "later", "image": "process", "command": ["sleep", "600"]}
            )
        await _until(watch, "later", timeout=5)
    finally:
        await _interrupt(watch)
