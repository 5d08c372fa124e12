"""API request metrics: labelled by route template, known method and the status the client
got (also from the error middleware and the router), so a client cannot grow the label set."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from node.http_util import HttpError, errors_middleware
from node.telemetry import Telemetry


def samples(telemetry: Telemetry, name: str) -> dict[tuple, float]:
    body, _ = telemetry.render("")
    (family,) = [f for f in text_string_to_metric_families(body.decode()) if f.name == name]
    return {tuple(s.labels.values()): s.value for s in family.samples if s.name == f"{name}_total"}


async def test_requests_are_counted_by_route_template_method_and_status():
    telemetry = Telemetry()

    async def thing(request: web.Request) -> web.Response:
        return web.json_response({"ref": request.match_info["ref"]})

    async def conflict(_request: web.Request) -> web.Response:
        raise HttpError(409, "taken", "name")

    app = web.Application(middlewares=[telemetry.middleware(), errors_middleware])
    app.router.add_get("/v1/things/{ref}", thing)
    app.router.add_post("/v1/things", conflict)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            for path in (
                "/v1/things/a",
                "/v1/things/b",
                "/v1/x/../../etc/passwd",
                "/random-1",
                "/random-2",
            ):
                async with session.get(server.make_url(path)):
                    pass
            async with session.post(server.make_url("/v1/things"), json={}) as resp:
                assert resp.status == 409
            async with session.request("TRACE", server.make_url("/v1/things/a")) as resp:
                assert resp.status == 405
    finally:
        await server.close()
    assert samples(telemetry, "shoal_api_requests") == {
        ("GET", "/v1/things/{ref}", "200"): 2.0,
        ("GET", "unmatched", "404"): 3.0,
        ("POST", "/v1/things", "409"): 1.0,
        ("other", "unmatched", "405"): 1.0,
    }


async def test_each_new_leader_is_counted_once():
    telemetry = Telemetry()
    changed, leaders = asyncio.Event(), iter(["a", "a", None, "a", "b", None, "c"])
    current = ["a"]
    watcher = asyncio.create_task(telemetry.count_leader_changes(changed, lambda: current[0]))
    for leader in leaders:
        current[0] = leader
        changed.set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    watcher.cancel()
    # a -> (none) -> a is no change; a -> b and b -> (none) -> c are two.
    body, _ = telemetry.render("")
    assert b"shoal_raft_leader_changes_total 2.0" in body
