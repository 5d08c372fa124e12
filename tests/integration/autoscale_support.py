"""The autoscaling flow on a real 3-node cluster, shared by the process-runtime integration
test and the Docker end-to-end test: an rps-targeted service goes from 1 to >= 3 replicas
under load sent through one node's published ingress port, and back to 1 once the load
stopped and the scale-down cooldown passed; each step is a `service.autoscaled` event, and
`shoal service status` shows the policy and the decision."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp

from node.cli_rollout import parse_sse
from node.localcluster import LocalCluster, wait_for
from tests.integration.mesh_support import PUBLISHED, new_session

# Nodes report every second, so a test sees a decision within a few seconds.
FAST_METRICS = ["--metrics-interval", "1"]
# About 5 requests/s per replica: the load below (tens of requests per second) needs the
# maximum of 4, none needs more than 1.
AUTOSCALE = {
    "min": 1,
    "max": 4,
    "metric": "rps",
    "target": 5,
    "cooldown_up": "2s",
    "cooldown_down": "6s",
}


async def load(address: str, stop: asyncio.Event) -> int:
    """Requests (a new connection each: the proxy counts connections) until `stop`."""
    sent = 0
    async with new_session() as session:
        while not stop.is_set():
            try:
                async with session.get(f"http://{address}:{PUBLISHED}/") as answer:
                    await answer.read()
                sent += 1
            except (TimeoutError, aiohttp.ClientError):
                pass  # a replica starting or stopping: the load goes on
            await asyncio.sleep(0.02)
    return sent


async def replicas(cluster: LocalCluster) -> tuple[int, int]:
    """(the spec's replica count, running tasks told to run)."""
    service = await cluster.get(0, "/v1/services/web")
    return service["spec"]["replicas"], service["replicas"]["running"]


async def autoscaled_events(cluster: LocalCluster) -> list[dict]:
    async with cluster.nodes[0].client() as client:
        lines = client.stream_lines("/v1/events", service="web", since="0", follow="0")
        return [data async for kind, data in parse_sse(lines) if kind == "service.autoscaled"]


def status_text(cluster: LocalCluster) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "node",
            "service",
            "status",
            "web",
            "--addr",
            cluster.nodes[1].socket,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def autoscale_flow(cluster: LocalCluster, spec: dict) -> None:
    """`spec` answers HTTP GET on PUBLISHED; it is created with one replica and AUTOSCALE."""
    async with cluster.nodes[0].client() as client:
        await client.post("/v1/services", {**spec, "replicas": 1, "autoscale": AUTOSCALE})

    async def running(count: int) -> bool:
        return await replicas(cluster) == (count, count)

    await wait_for(lambda: running(1), 60, "one running replica")
    stop = asyncio.Event()
    sender = asyncio.ensure_future(load(cluster.nodes[2].address, stop))
    try:

        async def scaled_up() -> bool:
            wanted, live = await replicas(cluster)
            return wanted >= 3 and live >= 3

        await wait_for(scaled_up, 45, "the autoscaler to run >= 3 replicas under load")
    finally:
        stop.set()
        sent = await sender
    assert sent > 0
    await wait_for(lambda: running(1), 45, "the autoscaler to return to 1 replica after the load")

    events = await autoscaled_events(cluster)
    ups = [e for e in events if e["detail"]["to"] > e["detail"]["from"]]
    downs = [e for e in events if e["detail"]["to"] < e["detail"]["from"]]
    assert ups and ups[0]["detail"]["from"] == 1 and ups[0]["detail"]["metric"] == "rps"
    assert ups[0]["detail"]["value"] > AUTOSCALE["target"] and ups[0]["detail"]["target"] == 5
    assert downs and downs[-1]["detail"]["to"] == 1
    status = status_text(cluster)
    assert "autoscale 1..4 replicas on rps (target 5)" in status
    assert "service.autoscaled" in status
    inspect = await cluster.get(0, "/v1/services/web")
    assert inspect["autoscaled"]["to_replicas"] == 1
    print(json.dumps([e["message"] for e in events], indent=1))
