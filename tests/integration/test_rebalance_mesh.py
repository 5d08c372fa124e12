"""Rebalancing on a real process cluster, through the routing mesh under continuous
requests: 6 replicas on 2 nodes, a third node joins, 2 tasks move to it one at a time, never
fewer than 6 run, and no request fails."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from node.devcluster.localcluster import wait_for
from tests.integration.mesh_support import mesh_cluster, serving
from tests.integration.test_rollout_mesh import ROLLING, hammer

pytestmark = pytest.mark.timeout(240)

SIX = {**ROLLING, "replicas": 6, "rebalance": "auto"}


@pytest.fixture
async def pair(tmp_path):
    async with mesh_cluster(tmp_path, count=2) as cluster:
        yield cluster


async def test_a_joining_node_gets_two_of_six_tasks_without_a_failed_request(pair):
    first_two = [n.address for n in pair.nodes[:2]]
    async with pair.nodes[0].client() as client:
        await client.post("/v1/services", SIX)

        async def running() -> list[dict]:
            return [
                t
                for t in await client.get("/v1/tasks?service=web")
                if t["desired"] == "running" and t["state"] == "running"
            ]

        async def on_nodes(counts: list[int]) -> bool:
            by_node = Counter(t["node_name"] for t in await running())
            return sorted(by_node.values()) == counts

        await wait_for(lambda: on_nodes([3, 3]), 60, "6 tasks on 2 nodes")

        async def both_serving() -> bool:
            return all([await serving(pair, i, 6) for i in range(2)])

        await wait_for(both_serving, 60, "both nodes to serve 6 endpoints")
        stop = asyncio.Event()
        load = asyncio.ensure_future(hammer(first_two, stop))
        fewest = [6]

        async def spread_over_three() -> bool:
            now_running = await running()
            fewest[0] = min(fewest[0], len({t["slot"] for t in now_running}))
            return await on_nodes([2, 2, 2])

        await pair.add(pair.nodes[2])
        await wait_for(spread_over_three, 90, "2 tasks on each of 3 nodes")
        await asyncio.sleep(3.0)  # the moved tasks' drain and stop, under load too
        stop.set()
        done, failures = await load
    tasks = await pair.get(0, "/v1/tasks?service=web")
    moved = [t for t in tasks if t["message"].startswith("moved to node n3")]
    print(f"{done} requests while 2 tasks moved; fewest slots running: {fewest[0]}")
    assert len(moved) == 2 and fewest[0] == 6
    assert done > 0 and failures == []
