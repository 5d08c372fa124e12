"""Task logs over HTTP: served by the node that runs the task, passed on by any other, with
clear errors for bad queries and unknown tasks. Two API servers share one real state machine;
the task is a real process run by a real agent."""

from __future__ import annotations

import contextlib
import types

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from consensus.model import Node, Resources
from consensus.nodes import RegisterNode
from node.agent import Agent
from node.api.context import NODE
from node.api.http_util import HttpError, errors_middleware
from node.api.tasks import LogQuery, parse_log_query, routes
from node.client import ApiError, ShoalClient
from node.runtime import ProcessDriver
from tests.integration.agent_support import StateSource, run_agent

# One numbered line every 0.1 s, forever: what a follower sees next was not there before.
COUNTER = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.1; done"]


class Control:
    def __init__(self) -> None:
        self.clients: list[ShoalClient] = []

    def client_for(self, node: Node) -> ShoalClient:
        self.clients.append(
            ShoalClient(f"http://{node.api_address}")
        )  # the stand-ins serve plain HTTP
        return self.clients[-1]


@pytest.fixture
async def cluster(tmp_path):
    """Nodes n1 (runs the task) and n2 (runs nothing), each with its own API server."""
    source = StateSource("n1")
    driver = ProcessDriver(str(tmp_path / "n1"), node_id="n1")
    agent = Agent(
        node_id="n1",
        driver=driver,
        read_state=source.read,
        changed=source.changed,
        submit=source.submit,
        advertise="127.0.0.1",
        report_interval=0.05,
    )
    servers: dict[str, TestServer] = {}
    control = Control()
    for node_id in ("n1", "n2"):
        app = web.Application(middlewares=[errors_middleware])
        app[NODE] = types.SimpleNamespace(
            node_id=node_id,
            store=types.SimpleNamespace(view=source.read),
            control=control,
            agent=agent if node_id == "n1" else None,
        )
        app.add_routes(routes)
        servers[node_id] = TestServer(app, host="127.0.0.1")
        await servers[node_id].start_server()
        await source.submit(
            RegisterNode(
                Node(
                    node_id,
                    node_id,
                    "127.0.0.1",
                    servers[node_id].port,
                    7421,
                    7422,
                    resources=Resources(4000, 1 << 30),
                )
            )
        )
    await source.create_service({"name": "counter", "image": "process", "command": COUNTER})
    (task_id,) = await source.assign("counter", 1)
    clients = {n: ShoalClient(f"http://127.0.0.1:{s.port}") for n, s in servers.items()}
    try:
        async with run_agent(agent):
            await source.until(lambda s: s.task(task_id).state == "running")
            yield task_id, clients
    finally:
        for client in [*clients.values(), *control.clients]:
            await client.close()
        for server in servers.values():
            await server.close()
        await driver.remove(task_id)


async def lines(client: ShoalClient, task_id: str, count: int, **params) -> list[str]:
    """The first `count` lines of the task's log stream (or all, if it ends first)."""
    seen: list[str] = []
    async with contextlib.aclosing(
        client.stream_lines(f"/v1/tasks/{task_id}/logs", **params)
    ) as stream:
        async for line in stream:
            seen.append(line)
            if len(seen) == count:
                break
    return seen


def number(line: str) -> int:
    word, n = line.split()
    assert word == "line"
    return int(n)


@pytest.mark.parametrize("node_id", ["n1", "n2"])
async def test_logs_are_read_and_followed_through_any_node(cluster, node_id):
    task_id, clients = cluster
    client = clients[node_id]
    # Follow until output exists, so that a later read has lines to count.
    assert await lines(client, task_id, 2, follow="1") == ["line 1", "line 2"]
    last_two = await lines(client, task_id, 100, tail="2")
    assert len(last_two) == 2 and number(last_two[1]) == number(last_two[0]) + 1
    # Following from the last line on shows what is written after the request.
    followed = await lines(client, task_id, 3, follow="1", tail="1")
    assert [number(line) for line in followed] == [number(followed[0]) + i for i in range(3)]
    assert number(followed[-1]) > number(last_two[-1])


@pytest.mark.parametrize(
    "node_id, unknown, params, status, field",
    [
        ("n2", True, {}, 404, None),
        ("n1", False, {"tail": "-1"}, 400, "tail"),
        ("n2", False, {"follow": "maybe"}, 400, "follow"),
        # A request passed on must be answered where it lands, never passed on again.
        ("n2", False, {"local": "1"}, 409, None),
    ],
)
async def test_bad_log_requests_get_clear_errors(cluster, node_id, unknown, params, status, field):
    task_id, clients = cluster
    with pytest.raises(ApiError) as err:
        await lines(clients[node_id], "no-such-task" if unknown else task_id, 1, **params)
    assert (err.value.status, err.value.field) == (status, field)


@pytest.mark.parametrize(
    "query, expected",
    [
        ({}, LogQuery()),
        ({"follow": "1", "tail": "10"}, LogQuery(True, 10)),
        ({"follow": "false", "tail": "all", "local": "yes"}, LogQuery(False, None, True)),
        ({"tail": "0"}, LogQuery(tail=0)),
    ],
)
def test_log_queries(query, expected):
    assert parse_log_query(query) == expected


@pytest.mark.parametrize(
    "query, field",
    [
        ({"tail": "ten"}, "tail"),
        ({"tail": "-5"}, "tail"),
        ({"follow": "2"}, "follow"),
        ({"local": "x"}, "local"),
    ],
)
def test_bad_log_queries_name_the_field(query, field):
    with pytest.raises(HttpError) as err:
        parse_log_query(query)
    assert (err.value.status, err.value.field) == (400, field)
