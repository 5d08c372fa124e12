"""The agent with a real Docker Engine and the real state machine: limits reach the
container, a container removed by hand and a missing image become failed tasks, and a
runtime-run health check that fails stops the task."""

from __future__ import annotations

import asyncio
import uuid

import docker
import pytest

from node.agent import Agent
from node.agent.translate import VANISHED
from node.runtime.docker_driver import DockerDriver
from node.runtime.model import LABEL_NODE, LABEL_TASK
from tests.integration.agent_support import StateSource, run_agent

pytestmark = pytest.mark.e2e

HTTPD = ["httpd", "-f", "-p", "80", "-h", "/tmp"]


@pytest.fixture
async def node(busybox_image):
    """A fresh node id (the engine may be shared) and its driver; its containers go after."""
    node_id = f"agent-e2e-{uuid.uuid4().hex[:8]}"
    driver = await DockerDriver.connect(node_id, pull=False)
    yield node_id, driver
    for seen in await driver.list_owned():
        await driver.remove(seen.task_id)
    await driver.aclose()


@pytest.fixture
def client():
    client = docker.from_env()
    yield client
    client.close()


def agent_for(source: StateSource, driver: DockerDriver) -> Agent:
    return Agent(
        node_id=source.node_id,
        driver=driver,
        read_state=source.read,
        changed=source.changed,
        submit=source.submit,
        advertise="127.0.0.1",
        report_interval=0.05,
    )


def container_of(client, node_id: str, task_id: str):
    (found,) = client.containers.list(
        all=True, filters={"label": [f"{LABEL_NODE}={node_id}", f"{LABEL_TASK}={task_id}"]}
    )
    return found


async def http_status_line(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        return await reader.readline()
    finally:
        writer.close()


async def test_httpd_runs_with_its_memory_limit_and_a_reachable_endpoint(
    node, client, busybox_image
):
    node_id, driver = node
    source = StateSource(node_id)
    await source.create_service(
        {
            "name": "web",
            "image": busybox_image,
            "command": HTTPD,
            "ports": ["8080:80"],
            "resources": {"limits": {"memory": "64M"}},
            "stop_grace_period": "2s",
            "health": {"kind": "tcp", "interval": "0.3s", "timeout": "2s"},
        }
    )
    (task_id,) = await source.assign("web", 1)
    async with run_agent(agent_for(source, driver)):
        await source.until(lambda s: s.task(task_id).health == "healthy")
    task = source.task(task_id)
    assert task.state == "running"
    (binding,) = task.endpoint.ports
    assert (task.endpoint.address, binding.target) == ("127.0.0.1", 80)
    assert (await http_status_line(binding.host_port)).startswith(b"HTTP/1.")
    host_config = container_of(client, node_id, task_id).attrs["HostConfig"]
    assert host_config["Memory"] == 64 << 20


async def test_a_container_removed_by_hand_is_reported_failed(node, client, busybox_image):
    node_id, driver = node
    source = StateSource(node_id)
    await source.create_service({"name": "web", "image": busybox_image, "command": HTTPD})
    (task_id,) = await source.assign("web", 1)
    async with run_agent(agent_for(source, driver)):
        await source.until(lambda s: s.task(task_id).state == "running")
        await asyncio.to_thread(container_of(client, node_id, task_id).remove, force=True)
        await source.until(lambda s: s.task(task_id).state == "failed")
    task = source.task(task_id)
    # `docker rm -f` kills, then removes: the agent sees the death or, if it looks late, the void.
    assert (task.error, task.exit_code) in (("exited with status 137", 137), (VANISHED, None))


async def test_a_missing_image_fails_the_task_with_a_clear_error(node, busybox_image):
    node_id, driver = node
    source = StateSource(node_id)
    await source.create_service({"name": "web", "image": "no-such-image:404"})
    (task_id,) = await source.assign("web", 1)
    async with run_agent(agent_for(source, driver)):
        await source.until(lambda s: s.task(task_id).state == "failed")
    error = source.task(task_id).error
    assert error.startswith("image 'no-such-image:404' is not on this node and cannot be pulled")


async def test_a_failing_runtime_health_check_stops_the_task(node, busybox_image):
    node_id, driver = node
    source = StateSource(node_id)
    await source.create_service(
        {
            "name": "web",
            "image": busybox_image,
            "command": HTTPD,
            "stop_grace_period": "1s",
            "health": {
                "kind": "cmd",
                "command": ["false"],
                "interval": "0.5s",
                "timeout": "1s",
                "retries": 1,
            },
        }
    )
    (task_id,) = await source.assign("web", 1)
    async with run_agent(agent_for(source, driver)):
        await source.until(lambda s: s.task(task_id).state == "failed")
        assert not (await driver.inspect(task_id)).alive
    task = source.task(task_id)
    assert task.health == "unhealthy"
    assert task.error == "health check failed: the runtime's health check reports it unhealthy"
