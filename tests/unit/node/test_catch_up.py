"""A node that does not hold the cluster's state yet answers 503 with how far behind it is,
says so in /healthz, joins neither gossip's view as ready nor the voter set."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from consensus.model import Node
from consensus.raft import SyncProgress
from netoverlay.gossip.model import Member, MemberState
from node.api.catch_up import catch_up_middleware
from node.loops.liveness import status_changes
from node.loops.voters import plan_voter_change


def _progress(
    caught_up: bool,
    leader: str | None = "127.0.0.1:7421",
    commit: int | None = 6007,
    applied: int = 1,
) -> SyncProgress:
    return SyncProgress(caught_up, leader, applied, commit)


def test_progress_says_how_far_behind():
    assert _progress(False).behind == 6006
    assert "6006 committed entries behind" in _progress(False).describe()
    assert "no leader" in _progress(False, leader=None, commit=None).describe()
    assert _progress(True, applied=6007).describe() == "in step with the cluster"


async def _client(progress: SyncProgress) -> TestClient:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app = web.Application(middlewares=[catch_up_middleware(lambda: progress, "n4")])
    for path in (
        "/healthz",
        "/v1/cluster",
        "/v1/services",
        "/v1/mesh",
        "/v1/services/web/endpoints",
    ):
        app.router.add_get(path, answer)
    app.router.add_post("/v1/services", answer)
    app.router.add_post("/v1/internal/raft-role", answer)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_a_node_catching_up_refuses_reads_and_writes_but_describes_itself():
    client = await _client(_progress(False))
    try:
        for method, path in (
            ("GET", "/v1/services"),
            ("POST", "/v1/services"),
            ("GET", "/v1/mesh"),
        ):
            response = await client.request(method, path)
            assert response.status == 503, path
            body = await response.json()
            assert "n4 does not hold the cluster's state yet" in body["error"]
            assert "6006 committed entries behind" in body["error"]
            assert response.headers["Retry-After"] == "1"
        for method, path in (
            ("GET", "/healthz"),
            ("GET", "/v1/cluster"),
            ("POST", "/v1/internal/raft-role"),
        ):
            assert (await client.request(method, path)).status == 200, path
        # An old answer is there for the asking, except what gossip and the mesh build.
        assert (await client.get("/v1/services?stale=1")).status == 200
        assert (await client.get("/v1/services/web/endpoints?stale=1")).status == 503
        assert (await client.post("/v1/services?stale=1")).status == 503
    finally:
        await client.close()


async def test_a_node_in_step_serves_everything():
    client = await _client(_progress(True, applied=6007))
    try:
        assert (await client.get("/v1/services")).status == 200
        assert (await client.post("/v1/services")).status == 200
    finally:
        await client.close()


def _node(i: int, role: str = "member", status: str = "ready") -> Node:
    return Node(
        id=f"id{i}",
        name=f"n{i}",
        address=f"127.0.0.{i}",
        api_port=7420,
        raft_port=7421,
        gossip_port=7422,
        role=role,
        status=status,
        joined_at=float(i),
    )


def _member(i: int, state: MemberState) -> Member:
    return Member(f"id{i}", (f"127.0.0.{i}", 7422), state=state)


def test_a_joining_node_turns_ready_only_when_gossip_sees_it():
    joining = _node(4, status="joining")
    assert status_changes([joining], {}, "id1", now=5.0) == []
    assert status_changes([joining], {"id4": _member(4, MemberState.DEAD)}, "id1", 5.0) == []
    (change,) = status_changes([joining], {"id4": _member(4, MemberState.ALIVE)}, "id1", 5.0)
    assert (change.node_id, change.status) == ("id4", "ready")


def test_a_node_joining_too_long_unseen_by_gossip_is_down():
    """After a restore the old nodes are `joining` until they rejoin: one that does not
    come back within the grace is down, and its tasks move."""
    import dataclasses

    joining = dataclasses.replace(_node(4, status="joining"), status_changed_at=100.0)
    assert status_changes([joining], {}, "id1", now=399.0, unseen_grace=300) == []
    (change,) = status_changes([joining], {}, "id1", now=401.0, unseen_grace=300)
    assert (change.node_id, change.status) == ("id4", "down")
    seen = {"id4": _member(4, MemberState.SUSPECT)}
    assert status_changes([joining], seen, "id1", now=401.0, unseen_grace=300) == []


def test_autopilot_never_promotes_a_joining_node_and_passes_over_a_failed_one():
    voter = _node(1, "voter")
    assert (
        plan_voter_change(
            [voter, _node(2, status="joining"), _node(3, status="joining")],
            "id1",
            now=100,
            grace=60,
        )
        is None
    )
    three = [voter, _node(2), _node(3)]
    assert plan_voter_change(three, "id1", 100, 60).node.id == "id2"
    assert plan_voter_change(three, "id1", 100, 60, skip=frozenset({"id2"})).node.id == "id3"
