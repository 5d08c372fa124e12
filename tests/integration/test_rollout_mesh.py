"""Zero downtime: a start-first update of a 3-replica service with an HTTP health check,
under continuous requests through the routing mesh (proxy data plane) of every node of a
real 3-node process cluster, fails no request."""

from __future__ import annotations

import asyncio
import time

import pytest

from node.devcluster.localcluster import wait_for
from tests.integration.mesh_support import all_serving, fetch, new_session
from tests.integration.test_mesh_process import SPEC

pytestmark = pytest.mark.timeout(180)

# The start period lets a new server come up before its failed probes count.
ROLLING = {
    **SPEC,
    "replicas": 3,
    "constraints": [],
    "env": {"V": "1"},
    "health": {**SPEC["health"], "start_period": "3s"},
    "update": {"parallelism": 1, "order": "start-first", "monitor": "1s"},
}


async def hammer(addresses: list[str], stop: asyncio.Event) -> tuple[int, list[str]]:
    """Requests in a loop through every node until `stop`; (count, failures)."""
    done, failures = 0, []
    async with new_session() as session:
        while not stop.is_set():
            for address in addresses:
                try:
                    await fetch(session, address)
                except Exception as exc:  # every kind of failure counts; none may happen
                    failures.append(f"{address}: {exc!r}")
                done += 1
    return done, failures


async def test_a_start_first_update_drops_no_request_through_the_mesh(mesh_trio):
    addresses = [n.address for n in mesh_trio.nodes]
    async with mesh_trio.nodes[0].client() as client:
        await client.post("/v1/services", ROLLING)
        await wait_for(lambda: all_serving(mesh_trio, 3), 60, "every node to serve 3 endpoints")
        stop = asyncio.Event()
        load = asyncio.ensure_future(hammer(addresses, stop))
        await asyncio.sleep(1.0)
        await client.patch("/v1/services/web", {"env": {"V": "2"}})

        async def rolled_out() -> bool:
            service = await client.get("/v1/services/web")
            return service["rollout"] is not None and service["rollout"]["state"] == "completed"

        started = time.monotonic()
        await wait_for(rolled_out, 90, "the update to complete")
        await asyncio.sleep(2.0)  # the last old task's shutdown, under load too
        stop.set()
        done, failures = await load
    print(f"{done} requests during a {time.monotonic() - started:.1f} s rollout")
    assert done > 0 and failures == []
    live = [t for t in await mesh_trio.get(0, "/v1/tasks?service=web") if t["desired"] == "running"]
    assert sorted(t["spec_version"] for t in live) == [2, 2, 2]
