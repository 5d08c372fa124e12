"""The routing mesh, the endpoint table and DNS on a real 3-node cluster with the process
runtime, with each data plane (nftables where root and nft exist)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys

import pytest

from netoverlay.lb import NftConfig, NftDataPlane, ServicePort
from node.devcluster.localcluster import NodeProc
from node.runtime.process_records import load_record
from tests.integration.mesh_support import (
    HTTP_CHECK,
    PUBLISHED,
    WEB,
    mesh_cluster,
    require_nft,
    routing_mesh_flow,
)

pytestmark = pytest.mark.timeout(180)

# Answers every GET with its task id, so a test can tell which replica served it.
SERVER = """\
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["SHOAL_TASK_ID"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
"""
SPEC = {
    **WEB,
    "image": "process",
    "command": [sys.executable, "-c", SERVER],
    "ports": [f"{PUBLISHED}:8000"],
    "health": HTTP_CHECK,
}


@pytest.fixture(params=["proxy", "nft"])
async def cluster(request, tmp_path):
    if request.param == "nft":
        require_nft()
    async with mesh_cluster(tmp_path, request.param) as cluster:
        yield cluster


async def kill_process(task: dict, node: NodeProc) -> None:
    record = load_record(node.data_dir, task["id"])
    assert record is not None, f"no process record of task {task['id']} on {node.name}"
    os.kill(record.pid, signal.SIGKILL)


async def test_every_node_routes_to_healthy_replicas_through_kill_scale_and_rejoin(cluster):
    await routing_mesh_flow(cluster, SPEC, kill_process)


async def test_a_node_stopped_during_an_nft_sync_leaves_no_table(tmp_path):
    """A stop cancels the route loop, possibly while `nft -f` runs: that transaction must
    not land after the stop removed the table. `nft` is slowed down by a wrapper so the
    cancellation always comes mid-transaction."""
    require_nft()
    slow_nft = tmp_path / "slow-nft"
    slow_nft.write_text(f'#!/bin/sh\nsleep 1\nexec {shutil.which("nft")} "$@"\n')
    slow_nft.chmod(0o755)
    config = NftConfig(host="127.0.0.1", table=f"shoal_cancel_{os.getpid()}", nft=str(slow_nft))
    plane = NftDataPlane(config)
    sync = asyncio.ensure_future(plane.sync([ServicePort("web", PUBLISHED, 80)], {}))
    try:
        await asyncio.sleep(0.3)  # the wrapper is asleep: the transaction has not run yet
        sync.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sync
        await asyncio.sleep(1.5)  # the wrapper would have run nft by now, had it survived
        listed = subprocess.run(["nft", "list", "table", "ip", config.table], capture_output=True)
        assert listed.returncode != 0, listed.stdout.decode()
    finally:
        subprocess.run(["nft", "delete", "table", "ip", config.table], capture_output=True)
