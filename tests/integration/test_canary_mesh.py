"""Canary updates through the routing mesh of a real 3-node process cluster, under
continuous requests: the canary runs beside the old replicas and shares the traffic with them,
a promote rolls the rest out and a rollback removes the canary and leaves the old tasks as
they were, and no request fails."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from node.devcluster.localcluster import wait_for
from tests.integration.mesh_support import all_serving, fetch, new_session
from tests.integration.test_rollout_mesh import ROLLING, hammer

pytestmark = pytest.mark.timeout(240)

CANARY = {
    **ROLLING,
    "update": {**ROLLING["update"], "canary": 1},
    "rollback": {"order": "start-first", "monitor": "1s"},
}


async def test_a_canary_shares_traffic_then_promote_and_rollback_drop_no_request(mesh_trio):
    addresses = [n.address for n in mesh_trio.nodes]
    async with mesh_trio.nodes[0].client() as client:
        await client.post("/v1/services", CANARY)
        await wait_for(lambda: all_serving(mesh_trio, 3), 60, "every node to serve 3 endpoints")
        stop = asyncio.Event()
        load = asyncio.ensure_future(hammer(addresses, stop))

        async def in_state(state: str) -> dict | None:
            service = await client.get("/v1/services/web")
            rollout = service["rollout"]
            return service if rollout and rollout["state"] == state else None

        async def running() -> dict[str, int]:
            tasks = await client.get("/v1/tasks?service=web")
            return {t["id"]: t["spec_version"] for t in tasks if t["desired"] == "running"}

        async def versions() -> list[int]:
            return sorted((await running()).values())

        await client.patch("/v1/services/web", {"env": {"V": "2"}})
        await wait_for(lambda: in_state("canary"), 60, "the canary phase")
        await wait_for(lambda: all_serving(mesh_trio, 4), 30, "the canary in every load balancer")
        assert await versions() == [1, 1, 1, 2]  # beside the 3 old replicas
        by_task = await running()
        served: Counter = Counter()
        async with new_session() as session:
            for _ in range(30):
                for address in addresses:
                    served[by_task.get(await fetch(session, address))] += 1
        print(f"canary phase: requests served by version {dict(served)}")
        assert served[2] >= 9 and served[1] >= 45  # about 1 in 4 for 1 canary beside 3

        promoted = await client.post("/v1/services/web/promote")
        assert promoted["rollout"]["promoted"] is True
        await wait_for(lambda: in_state("completed"), 90, "the promoted update to complete")
        assert await versions() == [2, 2, 2]

        old = await running()
        await client.patch("/v1/services/web", {"env": {"V": "3"}})
        await wait_for(lambda: in_state("canary"), 60, "the second canary phase")
        await client.post("/v1/services/web/rollback")
        back = await wait_for(lambda: in_state("rolled_back"), 90, "the rollback")
        assert back["spec"]["env"] == {"V": "2"}
        await wait_for(
            lambda: all_serving(mesh_trio, 3), 30, "the canary out of every load balancer"
        )
        assert await running() == old  # the old tasks, untouched
        await asyncio.sleep(2.0)  # the canary's shutdown, under load too
        stop.set()
        done, failures = await load
    print(f"{done} requests through both canaries")
    assert done > 0 and failures == []
