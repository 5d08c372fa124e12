"""Sixty real node processes on loopback: they join, stay healthy for a hold time, a write
is visible on every one of them (linearizable and stale reads on each), and a voter killed
with SIGKILL is replaced by autopilot while the members are present (5 voters: the most
the cluster keeps).

A soak, not part of the default run: `pytest -m scale tests/integration/test_scale_sixty.py -s`.
SHOAL_SCALE_HOLD sets the hold in seconds (300 by default); SHOAL_SCALE_NODES the node count.
It prints `RESULT {json}` with the figures it measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time

import pytest

from consensus.model import target_voter_count
from node.devcluster.localcluster import EQUAL_PROCESS_NODES, LocalCluster, NodeProc, wait_for
from tests.integration.cluster_support import stop_nodes

NODES = int(os.environ.get("SHOAL_SCALE_NODES", "60"))
HOLD = float(os.environ.get("SHOAL_SCALE_HOLD", "300"))
# Every node shares the machine's cores with every other: bounds are generous.
JOIN_BOUND = 600.0
SETTLE = 180.0
# Joiners started at once: each spends a second or two of CPU starting up.
JOIN_BATCH = 10
VOTERS = target_voter_count(NODES)
GRACE = 10.0
CPU_WINDOW = 20.0
TICKS = os.sysconf("SC_CLK_TCK")

pytestmark = [pytest.mark.scale, pytest.mark.timeout(int(HOLD + 2400))]


@pytest.fixture
def cluster(tmp_path):
    cluster = LocalCluster(
        str(tmp_path), NODES, EQUAL_PROCESS_NODES + ["--voter-grace", str(GRACE)]
    )
    try:
        yield cluster
    finally:
        stop_nodes(cluster)
        print(cluster.logs()[-20000:])


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def _listed(node: NodeProc) -> list[dict]:
    async with node.client(timeout=30) as client:
        return await client.get("/v1/nodes")


async def _leader(cluster: LocalCluster, among: list[NodeProc]) -> NodeProc:
    async def named() -> NodeProc | None:
        async with among[0].client(timeout=30) as client:
            leader = (await client.get("/v1/cluster"))["leader"]
        return next((n for n in among if leader and n.name == leader["name"]), None)

    return await wait_for(named, timeout=SETTLE, what="a live leader")


async def _all_ready(via: NodeProc, names: set[str]) -> bool:
    listed = {n["name"]: n for n in await _listed(via)}
    return names <= set(listed) and all(listed[name]["status"] == "ready" for name in names)


async def _write(leader: NodeProc, owner: str, value: str) -> float:
    started = time.monotonic()
    async with leader.client(timeout=30) as client:
        await client.patch(f"/v1/nodes/{owner}", {"add_labels": {"scale": value}})
    return time.monotonic() - started


async def _visible_everywhere(nodes: list[NodeProc], owner: str, value: str) -> None:
    """Every node answers `value`, by a linearizable read and by a stale read of its own."""
    gate = asyncio.Semaphore(8)

    async def on(node: NodeProc, stale: bool) -> None:
        path = f"/v1/nodes/{owner}" + ("?stale=1" if stale else "")

        async def seen() -> bool:
            async with gate, node.client(timeout=30) as client:
                return (await client.get(path))["labels"].get("scale") == value

        await wait_for(seen, timeout=SETTLE, what=f"{value} on {node.name} (stale={stale})")

    await asyncio.gather(*(on(n, stale) for n in nodes for stale in (False, True)))


async def _voters(via: NodeProc) -> set[str]:
    return {n["name"] for n in await _listed(via) if n["role"] == "voter"}


async def test_sixty_nodes_join_hold_see_every_write_and_heal_a_killed_voter(cluster):
    figures: dict[str, object] = {"nodes": NODES, "hold_s": HOLD}
    first, joiners = cluster.nodes[0], cluster.nodes[1:]
    started = time.monotonic()
    await cluster.start(count=1)
    for at in range(0, len(joiners), JOIN_BATCH):
        await asyncio.gather(*(cluster.add(n) for n in joiners[at : at + JOIN_BATCH]))
    names = {n.name for n in cluster.nodes}
    await wait_for(lambda: _all_ready(first, names), timeout=JOIN_BOUND, what="all nodes ready")
    figures["join_all_s"] = round(time.monotonic() - started, 1)
    assert len(await _voters(first)) == VOTERS

    leader = await _leader(cluster, cluster.nodes)
    owner = first.name
    pids = [n.proc.pid for n in cluster.nodes]
    before = [_cpu_seconds(pid) for pid in pids]
    await asyncio.sleep(CPU_WINDOW)
    after = [_cpu_seconds(pid) for pid in pids]
    used = {
        n.name: (a - b) / CPU_WINDOW for n, a, b in zip(cluster.nodes, after, before, strict=True)
    }
    figures["leader_cpu_idle_pct"] = round(100 * used[leader.name], 1)
    figures["all_nodes_cpu_idle_pct"] = round(100 * sum(used.values()), 1)
    rss = sorted(_rss_mib(pid) for pid in pids)
    figures["rss_mib_min_median_max"] = [
        round(rss[0], 1),
        round(statistics.median(rss), 1),
        round(rss[-1], 1),
    ]

    # The hold: a write a second through the leader; every node stays running and ready.
    latencies: list[float] = []
    hold_end = time.monotonic() + HOLD
    checked = 0.0
    while time.monotonic() < hold_end:
        latencies.append(await _write(leader, owner, f"hold-{len(latencies)}"))
        if time.monotonic() - checked >= 15:
            assert all(n.running for n in cluster.nodes), "a node exited during the hold"
            assert await _all_ready(leader, names), "a node is not ready during the hold"
            checked = time.monotonic()
        await asyncio.sleep(1.0)
    latencies.sort()
    figures["writes_during_hold"] = len(latencies)
    figures["write_p50_ms"] = round(1000 * statistics.median(latencies), 1)
    figures["write_max_ms"] = round(1000 * latencies[-1], 1)
    assert all(n.running for n in cluster.nodes)
    assert await _all_ready(leader, names)
    await _write(leader, owner, "seen-by-all")
    await _visible_everywhere(cluster.nodes, owner, "seen-by-all")

    # A voter dies (not the leader: its members move to another voter's feed); autopilot
    # promotes a member in its place and the cluster commits with as many voters as before.
    voters = await _voters(leader)
    victim = next(n for n in cluster.nodes if n.name in voters and n is not leader)
    victim.kill9()
    killed = time.monotonic()
    alive = [n for n in cluster.nodes if n is not victim]

    async def replaced() -> bool:
        voters = await _voters(leader)
        return len(voters) == VOTERS and victim.name not in voters

    await wait_for(replaced, timeout=SETTLE + GRACE, what=f"a voter in place of {victim.name}")
    leader = await _leader(cluster, alive)
    await _write(leader, owner, "after-heal")
    figures["voter_replaced_s"] = round(time.monotonic() - killed, 1)
    figures["voter_grace_s"] = GRACE
    await _visible_everywhere(alive, owner, "after-heal")
    print("RESULT " + json.dumps(figures))
