"""Control-plane benchmark: committed writes through the HTTP API of a real 3-node cluster.

    python -m bench.consensus [--runs 3] [--clients 64] [--seconds 5] [--quick]

Prints, per run and as medians (with min-max): committed writes/s with N concurrent clients,
p50/p99 latency of sequential writes at low load, p50/p99 of sequential linearizable reads
sent to a follower (the default read: a read index confirmed by the leader), and leader
failover time (the leader paused by SIGSTOP, then killed by kill -9 -> the next committed
write through a survivor: a paused leader holds its connections open, so that takes an
election timeout; a dead one's close, and its followers elect at once). Ends
with one `RESULT {json}` line. Every write is a label change acknowledged only after Raft
committed it.
"""

from __future__ import annotations

import functools
import signal
import tempfile

import aiohttp

from bench.load import figures_of_run, first_commit_after, latency, run_control_plane, throughput
from node.devcluster.localcluster import LocalCluster, auth_for, ssl_for


async def _write_to(api: str, session: aiohttp.ClientSession, n: int) -> bool:
    return await _write(session, api, n)


async def _write(session: aiohttp.ClientSession, api: str, n: int) -> bool:
    async with session.patch(
        f"https://{api}/v1/nodes/n1",
        headers=auth_for(api),
        ssl=ssl_for(api),
        json={"add_labels": {"bench": str(n)}},
    ) as resp:
        await resp.read()
        return resp.status == 200


async def _read_from(api: str, session: aiohttp.ClientSession, n: int) -> bool:
    """The node written to, read back as any client reads it: linearizable, no `?stale`."""
    async with session.get(
        f"https://{api}/v1/nodes/n1", headers=auth_for(api), ssl=ssl_for(api)
    ) as resp:
        await resp.read()
        return resp.status == 200


async def failover(cluster: LocalCluster, how: str) -> float:
    """The leader paused (SIGSTOP: its connections stay open, so the others must wait out an
    election timeout; resumed once measured) or killed (kill -9: its connections close) ->
    the first write a survivor commits."""
    leader = await cluster.leader_index()
    survivors = [cluster.nodes[i].api for i in range(3) if i != leader]
    node = cluster.nodes[leader]

    def fault() -> None:
        if how == "pause":
            node.signal(signal.SIGSTOP)
        else:
            node.kill9()

    async def write(session: aiohttp.ClientSession, n: int) -> bool:
        return await _write(session, survivors[n % 2], n)

    took = await first_commit_after(fault, write)
    if how == "pause":
        node.signal(signal.SIGCONT)
        await cluster.wait_voters(3)
        await cluster.leader_index()
    else:
        node.start()
    return took


async def one_run(clients: int, seconds: float, latency_count: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as base:
        cluster = LocalCluster(base, 3)
        try:
            await cluster.start()

            await cluster.wait_voters(3)
            leader = await cluster.leader_index()
            write = functools.partial(_write_to, cluster.nodes[leader].api)
            await latency(write, 50)  # warm up connections and code paths
            samples = await latency(write, latency_count)
            follower = cluster.nodes[(leader + 1) % 3].api
            read = functools.partial(_read_from, follower)
            await latency(read, 50, "read")
            reads = await latency(read, latency_count, "read")
            rate = await throughput(write, clients, seconds)
            paused_s = await failover(cluster, "pause")
            killed_s = await failover(cluster, "kill")
        finally:
            cluster.stop()
    return figures_of_run(samples, reads, rate, paused_s, killed_s)


def main() -> None:
    run_control_plane(
        "python -m bench.consensus",
        "Shoal",
        one_run,
        {},
        {"writes_per_s": ">= 1000", "p50_ms": "<= 5", "failover_s": "<= 0.5"},
    )


if __name__ == "__main__":
    main()
