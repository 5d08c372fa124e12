"""The read middleware on a real single-voter Raft: a read waits for a confirmed read index,
concurrent readers share one, every answer carries the index and known-leader headers,
`?index=N` blocks until the state passes N, and bad parameters are a 400 naming the field."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import Node
from consensus.nodes import RegisterNode
from consensus.raft import RaftNode
from node.api import consistency
from node.api.http_util import errors_middleware
from node.devcluster.localcluster import wait_for
from tests.unit.consensus.test_raft_changes import free_port


@pytest.fixture
async def raft(tmp_path):
    node = RaftNode(data_dir=str(tmp_path), address=f"127.0.0.1:{free_port()}", password="test")
    node.start("voter", [])
    await wait_for(lambda: _leads(node), timeout=20, what="a leader")
    yield node
    node.stop()


async def _leads(raft: RaftNode) -> bool:
    return raft.is_leader()


async def _register(raft: RaftNode, i: int) -> None:
    await raft.propose(
        RegisterNode(
            Node(
                id=f"id{i}",
                name=f"n{i}",
                address="127.0.0.1",
                api_port=7420,
                raft_port=7421,
                gossip_port=7422,
            )
        )
    )


@pytest.fixture
async def client(raft):
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"applied": raft.applied()})

    app = web.Application(middlewares=[errors_middleware])
    consistency.install(app, raft)
    app.router.add_get("/v1/nodes", answer)
    app.router.add_post("/v1/nodes", answer)
    app.router.add_get("/v1/cluster", answer)
    test_client = TestClient(TestServer(app))
    await test_client.start_server()
    yield test_client
    await test_client.close()


async def test_a_read_is_confirmed_without_a_log_entry_and_says_where_it_was_served(raft, client):
    await _register(raft, 1)
    index = raft.status().commit_index
    asked = raft._read_rounds.asked
    response = await client.get("/v1/nodes")
    assert response.status == 200
    assert response.headers["X-Shoal-Index"] == str(raft.applied()) == "1"
    assert response.headers["X-Shoal-Known-Leader"] == "true"
    assert raft._read_rounds.asked == asked + 1, "one read index per read"
    assert raft.status().commit_index == index, "a read writes no entry"
    # A stale read and the node's own views read the local copy: no read index.
    for path in ("/v1/nodes?stale=1", "/v1/cluster"):
        response = await client.get(path)
        assert response.status == 200 and response.headers["X-Shoal-Index"] == "1"
    assert raft._read_rounds.asked == asked + 1
    # Writes carry the headers too.
    assert (await client.post("/v1/nodes")).headers["X-Shoal-Known-Leader"] == "true"


async def test_concurrent_readers_share_read_indexes(raft, client):
    before = raft._read_rounds.asked
    answers = await asyncio.gather(*(client.get("/v1/nodes") for _ in range(40)))
    assert all(a.status == 200 for a in answers)
    rounds = raft._read_rounds.asked - before
    assert 1 <= rounds < 40, f"{rounds} read indexes for 40 concurrent reads"


async def test_a_blocking_query_returns_as_soon_as_the_state_passes_its_index(raft, client):
    await _register(raft, 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiting = asyncio.ensure_future(client.get("/v1/nodes?index=1&wait=20s"))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await _register(raft, 2)
    response = await asyncio.wait_for(waiting, 5)
    assert response.headers["X-Shoal-Index"] == "2" and (await response.json())["applied"] == 2
    assert loop.time() - started < 5
    # Already past the index: at once. Never passed: after the wait, with the same index.
    assert (await client.get("/v1/nodes?index=0")).headers["X-Shoal-Index"] == "2"
    started = loop.time()
    response = await client.get("/v1/nodes?index=2&wait=300ms&stale=1")
    assert response.status == 200 and response.headers["X-Shoal-Index"] == "2"
    assert 0.25 < loop.time() - started < 3


@pytest.mark.parametrize(
    "query, field",
    [
        ("index=-1", "index"),
        ("index=x", "index"),
        ("index=1&wait=forever", "wait"),
        ("index=1&wait=11m", "wait"),
    ],
)
async def test_bad_blocking_parameters_name_the_field(client, query, field):
    response = await client.get(f"/v1/nodes?{query}")
    assert response.status == 400
    assert (await response.json())["field"] == field


async def test_without_a_leader_a_read_is_refused_unless_stale(tmp_path, monkeypatch):
    # A voter whose only partner never answers: no leader, no quorum.
    raft = RaftNode(data_dir=str(tmp_path), address=f"127.0.0.1:{free_port()}", password="t")
    raft.start("voter", [f"127.0.0.1:{free_port()}"])
    monkeypatch.setattr(consistency, "READ_TIMEOUT", 0.5)
    app = web.Application(middlewares=[errors_middleware])
    consistency.install(app, raft)

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get("/v1/nodes", answer)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        response = await client.get("/v1/nodes")
        assert response.status == 503 and response.headers["X-Shoal-Known-Leader"] == "false"
        assert "?stale=1" in (await response.json())["error"]
        assert (await client.get("/v1/nodes?stale=1")).status == 200
    finally:
        await client.close()
        raft.stop()


async def test_the_client_reads_the_index_and_asks_for_stale_reads_when_told(raft, client):
    from node.client import ShoalClient

    await _register(raft, 1)
    address = f"http://{client.host}:{client.port}"  # a plain test server
    asked = raft._read_rounds.asked
    async with ShoalClient(address) as linearizable:
        assert (await linearizable.get_at_index("/v1/nodes"))[1] == 1
    assert raft._read_rounds.asked == asked + 1
    async with ShoalClient(address, stale=True) as stale:
        body, served_at = await stale.get_at_index("/v1/nodes")
    assert (body, served_at) == ({"applied": 1}, 1)
    assert raft._read_rounds.asked == asked + 1  # no read index for the stale read
