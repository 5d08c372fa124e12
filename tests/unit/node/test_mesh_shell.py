"""The mesh shell with a real gossip service and proxy on loopback and the real state
machine: what it announces follows the state and, sooner, the agent's observations; what it
serves follows the table."""

from __future__ import annotations

import asyncio
import socket

import pytest

from consensus.model import Node, Resources
from consensus.nodes import RegisterNode
from consensus.tasks import (
    Assignment,
    AssignTasks,
    Endpoint,
    PortBinding,
    ReportTaskStatus,
    Task,
    TaskReport,
    services,
)
from netoverlay.gossip import GossipService, GossipServiceConfig
from node.mesh import Mesh, MeshConfig
from node.mesh.announce import endpoint_key
from tests.integration.agent_support import StateSource

NODE = "n1"


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (gossip uses both)."""
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


class Observers:
    """The agent's side of the seam: whoever registered hears each observation."""

    def __init__(self) -> None:
        self.callbacks: list = []

    def register(self, callback):
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def observe(self, report: TaskReport) -> None:
        for callback in list(self.callbacks):
            callback(report)


@pytest.fixture
async def mesh():
    source = StateSource(NODE)
    gossip = GossipService(
        GossipServiceConfig(node_id=NODE, secret=b"k" * 32, host="127.0.0.1", port=free_port())
    )
    await gossip.start()
    observers = Observers()
    published = free_port()
    mesh = Mesh(
        MeshConfig(NODE, ingress_address="127.0.0.1", dns_port=0),
        gossip=gossip,
        read_state=source.read,
        subscribe=asyncio.Event,
        on_report=observers.register,
    )
    await mesh.start()
    try:
        yield mesh, source, gossip, observers, published
    finally:
        await mesh.stop()
        await gossip.stop()


async def running_task(source: StateSource, published: int, **health) -> str:
    await source.create_service(
        {
            "name": "web",
            "image": "process",
            "command": ["true"],
            "ports": [f"{published}:80"],
            **health,
        }
    )
    (task_id,) = await source.assign("web", 1)
    endpoint = Endpoint("127.0.0.1", (PortBinding(80, 31000),))
    await source.submit(
        ReportTaskStatus(NODE, 3.0, (TaskReport(task_id, "running", endpoint=endpoint),))
    )
    return task_id


def announced(gossip: GossipService) -> set[str]:
    return {e.key for e in gossip.table_items() if e.owner == NODE}


async def test_a_failure_the_agent_sees_is_withdrawn_before_the_state_knows(mesh):
    mesh, source, gossip, observers, published = mesh
    task_id = await running_task(source, published)
    mesh.announce()
    assert announced(gossip) == {endpoint_key(task_id)}
    await mesh.sync()
    (port,) = mesh.serving()
    assert (port["published_port"], port["listening"], port["endpoints"]) == (
        published,
        True,
        ["127.0.0.1:31000"],
    )

    observers.observe(TaskReport(task_id, "failed", error="killed"))
    mesh.announce()
    assert source.task(task_id).state == "running"  # the report is not committed yet
    assert announced(gossip) == set()
    await mesh.sync()
    assert mesh.serving()[0]["endpoints"] == []
    # The name still answers (with the ingress address), the task list is empty.
    record = mesh.view().records["web"]
    assert record.addresses == ("127.0.0.1",) and record.tasks == ()


async def test_a_checked_task_is_announced_once_seen_healthy_and_withdrawn_when_it_ends(mesh):
    mesh, source, gossip, observers, published = mesh
    task_id = await running_task(source, published, health={"kind": "tcp", "port": 80})
    mesh.announce()
    assert announced(gossip) == set()  # running, but not yet healthy
    observers.observe(TaskReport(task_id, "running", health="healthy"))
    mesh.announce()
    assert announced(gossip) == {endpoint_key(task_id)}
    await source.submit(ReportTaskStatus(NODE, 4.0, (TaskReport(task_id, "shutdown"),)))
    mesh.announce()
    assert announced(gossip) == set()


async def test_a_commit_about_tasks_alone_rebuilds_no_view_and_a_gossip_change_does(mesh):
    mesh, source, gossip, observers, published = mesh
    task_id = await running_task(source, published)
    await mesh.sync()
    built = mesh.views_built
    # Commits that change no service: what the view is made of is the same tables.
    await source.submit(ReportTaskStatus(NODE, 4.0, (TaskReport(task_id, "running"),)))
    await source.submit(
        ReportTaskStatus(NODE, 5.0, (TaskReport(task_id, "running", health="healthy"),))
    )
    await mesh.sync()
    assert mesh.views_built == built
    mesh.announce()  # the task's endpoint enters the gossip table
    await mesh.sync()
    assert mesh.views_built == built + 1
    assert mesh.serving()[0]["endpoints"] == ["127.0.0.1:31000"]
    await source.create_service({"name": "api", "image": "process", "command": ["true"]})
    await mesh.sync()
    assert mesh.views_built == built + 2 and "api" in mesh.view().records


async def test_entries_this_node_holds_are_followed_from_the_table_events(mesh):
    mesh, source, gossip, observers, published = mesh
    task_id = await running_task(source, published)
    mesh.announce()
    assert announced(gossip) == {endpoint_key(task_id)}
    # An entry of ours the state no longer wants (left by an earlier run of this node).
    gossip.local_set(endpoint_key("gone"), {"service": "web"})
    mesh.announce()
    assert announced(gossip) == {endpoint_key(task_id)}


async def test_a_commit_about_another_node_announces_nothing_and_an_observation_does(mesh):
    mesh, source, gossip, observers, published = mesh
    task_id = await running_task(source, published)
    mesh.announce()
    made = mesh.announcements
    await source.submit(
        RegisterNode(Node("n2", "n2", "127.0.0.2", 1, 2, 3, resources=Resources(1000, 1 << 30)))
    )
    web = services(source.state)["web"]
    other = Task("web-2-elsewhere", web.id, "web", 2, web.version)
    await source.submit(AssignTasks(4.0, create=(other,), assign=(Assignment(other.id, "n2"),)))
    mesh.announce()
    assert mesh.announcements == made
    observers.observe(TaskReport(task_id, "failed", error="killed"))
    mesh.announce()
    assert mesh.announcements == made + 1 and announced(gossip) == set()
