"""The routing mesh, the endpoint table and DNS on a real 3-node cluster whose tasks are
busybox httpd containers on the Docker Engine: the same core flow as with processes."""

from __future__ import annotations

import asyncio

import docker
import pytest

from node.localcluster import LocalCluster, NodeProc
from node.runtime.model import LABEL_NODE, LABEL_TASK
from tests.integration.mesh_support import (HTTP_CHECK, PUBLISHED, WEB, node_ids,
                                            routing_mesh_flow)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# busybox httpd serving one page: the task's id, so a test can tell which replica served it.
HTTPD = ["sh", "-c", 'mkdir -p /www && echo "$SHOAL_TASK_ID" > /www/index.html && '
                     "exec httpd -f -p 80 -h /www"]


@pytest.fixture
def engine():
    client = docker.from_env()
    yield client
    client.close()


def remove_containers(engine, node_id: str) -> None:
    for container in engine.containers.list(all=True, filters={"label": f"{LABEL_NODE}={node_id}"}):
        container.remove(force=True)


@pytest.fixture
async def cluster(tmp_path, engine, busybox_image):
    cluster = LocalCluster(str(tmp_path), 3, ["--runtime", "docker", "--cpus", "4",
                                              "--memory", str(8 << 30)])
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
        cluster, engine, busybox_image):
    async def kill_container(task: dict, node: NodeProc) -> None:
        def kill() -> None:
            (container,) = engine.containers.list(filters={"label": f"{LABEL_TASK}={task['id']}"})
            container.kill()
        await asyncio.to_thread(kill)

    spec = {**WEB, "image": busybox_image, "command": HTTPD, "ports": [f"{PUBLISHED}:80"],
            "health": HTTP_CHECK}
    await routing_mesh_flow(cluster, spec, kill_container)
