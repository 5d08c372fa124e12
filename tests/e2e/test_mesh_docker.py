"""The routing mesh, the endpoint table and DNS with tasks as containers on the Docker
Engine: on a 3-node cluster, the same core flow as with processes; on a node that serves DNS
on port 53 of an address its containers reach, a container resolves a service by its short
name and reaches it through the routing mesh."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess

import docker
import pytest

from node.client import ShoalClient
from node.localcluster import LocalCluster, NodeProc, next_block, wait_for
from node.runtime.model import LABEL_NODE, LABEL_TASK
from tests.integration.mesh_support import (
    HTTP_CHECK,
    PUBLISHED,
    WEB,
    node_id_of,
    node_ids,
    routing_mesh_flow,
)
from tests.support import unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# busybox httpd serving one page: the task's id, so a test can tell which replica served it.
HTTPD = [
    "sh",
    "-c",
    'mkdir -p /www && echo "$SHOAL_TASK_ID" > /www/index.html && exec httpd -f -p 80 -h /www',
]


@pytest.fixture
def engine(busybox_image):
    # After busybox_image, which skips (or fails under SHOAL_REQUIRE_E2E) without an engine.
    client = docker.from_env()
    yield client
    client.close()


def remove_containers(engine, node_id: str) -> None:
    for container in engine.containers.list(all=True, filters={"label": f"{LABEL_NODE}={node_id}"}):
        container.remove(force=True)


@pytest.fixture
async def cluster(tmp_path, engine, busybox_image):
    cluster = LocalCluster(
        str(tmp_path), 3, ["--runtime", "docker", "--cpus", "4", "--memory", str(8 << 30)]
    )
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()
        # Containers outlive their nodes by design: remove what the test left running.
        for node_id in node_ids(cluster):
            await asyncio.to_thread(remove_containers, engine, node_id)
        print(cluster.logs())


async def test_every_node_routes_to_healthy_containers_through_kill_scale_and_rejoin(
    cluster, engine, busybox_image
):
    async def kill_container(task: dict, node: NodeProc) -> None:
        def kill() -> None:
            (container,) = engine.containers.list(filters={"label": f"{LABEL_TASK}={task['id']}"})
            container.kill()

        await asyncio.to_thread(kill)

    spec = {
        **WEB,
        "image": busybox_image,
        "command": HTTPD,
        "ports": [f"{PUBLISHED}:80"],
        "health": HTTP_CHECK,
    }
    await routing_mesh_flow(cluster, spec, kill_container)


# -- a container resolving and reaching a service -------------------------------------------

DNS_NODE_API_PORT = 27420


def bridge_gateway(engine) -> str:
    """The host's address on Docker's default bridge: where containers reach the host."""
    if shutil.which("ip") is None:
        unavailable("iproute2's ip is not installed")
    options = engine.networks.get("bridge").attrs.get("Options") or {}
    device = options.get("com.docker.network.bridge.name", "docker0")
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", device], capture_output=True, text=True
    )
    words = shown.stdout.split()
    if shown.returncode != 0 or "inet" not in words:
        unavailable(f"no IPv4 address on Docker's bridge {device}: {shown.stderr.strip()}")
    return words[words.index("inet") + 1].split("/")[0]


def require_free_dns_port(address: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 53))
        except OSError as exc:
            unavailable(f"cannot serve DNS on {address}:53 here: {exc}")


def container_logs(engine, node_id: str, service: str) -> str:
    labels = [f"{LABEL_NODE}={node_id}", f"shoal.service={service}"]
    return "".join(
        c.logs().decode(errors="replace")
        for c in engine.containers.list(all=True, filters={"label": labels})
    )


@pytest.fixture
async def dns_node(tmp_path, engine, busybox_image):
    """One node advertising the bridge gateway, with DNS on port 53 there."""
    gateway = bridge_gateway(engine)
    require_free_dns_port(gateway)
    node = NodeProc(
        1,
        next_block(),
        str(tmp_path),
        ["--runtime", "docker", "--advertise", gateway, "--dns-port", "53"],
        api_port=DNS_NODE_API_PORT,
    )
    node.start()
    try:
        yield node, gateway
    finally:
        node.stop()
        node_id = node_id_of(node)
        if node_id is not None:
            await asyncio.to_thread(remove_containers, engine, node_id)
        print(node.log())


async def test_a_container_resolves_a_service_by_name_and_reaches_it_through_the_mesh(
    dns_node, engine, busybox_image
):
    node, gateway = dns_node
    # A node advertising another address: reached here through its socket, without a token.
    client = ShoalClient(node.socket)
    async with client:
        await wait_for(lambda: client.get("/healthz"), what="the node to hold the state")
        await client.post(
            "/v1/services",
            {
                "name": "web",
                "image": busybox_image,
                "command": HTTPD,
                "ports": [f"{PUBLISHED}:80"],
                "health": HTTP_CHECK,
            },
        )
        await client.post(
            "/v1/services",
            {
                "name": "probe",
                "image": busybox_image,
                "command": [
                    "sh",
                    "-c",
                    "cat /etc/resolv.conf; while true; do nslookup web; "
                    f"timeout 3 wget -q -O- http://web:{PUBLISHED}/; sleep 0.5; done",
                ],
            },
        )

        async def web_answered_the_probe() -> str | None:
            tasks = await client.get("/v1/tasks?service=web")
            running = [t["id"] for t in tasks if t["state"] == "running"]
            logs = await asyncio.to_thread(container_logs, engine, node_id_of(node), "probe")
            return logs if running and running[0] in logs else None

        logs = await wait_for(
            web_answered_the_probe, timeout=60, what="the probe container to reach web by name"
        )
    # Docker gave the container the node as its resolver and the cluster's zone to search.
    assert f"nameserver {gateway}" in logs and "search shoal" in logs
    assert "web.shoal" in logs and f"Address: {gateway}" in logs
