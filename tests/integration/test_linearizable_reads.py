"""Reads through any node are linearizable, checked from outside with the WGL checker: clients
write and read two node labels through random nodes of a real three-node cluster while the
leader is paused (SIGSTOP) until another is elected and then resumed, and while a follower
is killed and restarted from its data dir. Left without a quorum, a node refuses a
linearizable read and serves `--stale` from its copy."""

from __future__ import annotations

import asyncio
import json
import random
import signal

import aiohttp
import pytest

from tests.integration.cluster_support import shoal, until_voters
from tests.safety.checker import not_linearizable
from tests.safety.harness import ReadResult
from tests.safety.history import HistoryRecorder, OpKind, Outcome
from tests.safety.shoal_client import LabelKey, ShoalApi

pytestmark = pytest.mark.timeout(240)

KEYS = ("n1/lin.a", "n1/lin.b")
CLIENTS = 6


@pytest.fixture
def cluster(fresh):
    return fresh(3)


async def _clients(
    api: ShoalApi, names: list[str], recorder: HistoryRecorder, stop: asyncio.Event
) -> None:
    async def read(node: str, key: str) -> ReadResult:
        target = LabelKey.parse(key)
        return ReadResult((await api.labels(node, target.owner)).get(target.label), 0)

    async def client(index: int) -> None:
        rng = random.Random(index)
        count = 0
        while not stop.is_set():
            node, key = rng.choice(names), rng.choice(KEYS)
            if rng.random() < 0.5:
                op = recorder.invoke(index, node, OpKind.READ, key)
                call = read(node, key)
            else:
                value, count = f"c{index}-{count}", count + 1
                op = recorder.invoke(index, node, OpKind.WRITE, key, value)
                call = api.write(node, key, value)
            try:
                result = await asyncio.wait_for(call, 4.0)
            except Exception as exc:  # the outcome is open: the write may have landed
                recorder.complete(op, Outcome.UNKNOWN, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)
            else:
                recorder.complete(
                    op, Outcome.OK, value=result.value if isinstance(result, ReadResult) else None
                )

    await asyncio.gather(*(client(i) for i in range(CLIENTS)))


async def test_reads_through_random_nodes_are_linearizable_across_a_pause_and_a_restart(cluster):
    await cluster.start()
    await until_voters(cluster, 3)
    names = [n.name for n in cluster.nodes]
    recorder, stop = HistoryRecorder(), asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0)) as session:
        api = ShoalApi(
            {n.name: n.api for n in cluster.nodes},
            cluster.nodes[0].api_token,
            session,
            0.05,
            ssl_context=cluster.nodes[0].ssl_context(),
        )
        clients = asyncio.create_task(_clients(api, names, recorder, stop))
        try:
            await asyncio.sleep(2.0)
            old = cluster.nodes[await cluster.leader_index()]
            old.signal(signal.SIGSTOP)
            await cluster.leader_index([i for i, n in enumerate(cluster.nodes) if n is not old])
            await asyncio.sleep(1.0)
            old.signal(signal.SIGCONT)  # it still believes it leads, for a moment
            await asyncio.sleep(2.0)
            leader = await cluster.leader_index()
            follower = next(n for i, n in enumerate(cluster.nodes) if i != leader)
            follower.kill9()
            follower.start()
            await asyncio.sleep(4.0)
        finally:
            stop.set()
            await clients
    history = recorder.history({})
    done = [op for op in history.operations if op.outcome is Outcome.OK]
    reads = sum(op.kind is OpKind.READ for op in done)
    assert reads >= 50 and len(done) - reads >= 50, "too little done to judge"
    violations = not_linearizable(history.operations)
    assert not violations, "\n".join(map(str, violations))

    # A node left without a quorum refuses a linearizable read and serves a stale one.
    for node in cluster.nodes[1:]:
        node.stop()
    addr = cluster.nodes[0].api
    refused = await asyncio.to_thread(shoal, "node", "ls", addr=addr)
    assert refused.returncode == 1 and "linearizable" in refused.stderr, refused.stderr
    stale = await asyncio.to_thread(shoal, "node", "ls", "--stale", "-o", "json", addr=addr)
    assert stale.returncode == 0, stale.stderr
    assert {n["name"] for n in json.loads(stale.stdout)} == set(names)
