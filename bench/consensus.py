"""Control-plane benchmark: committed writes through the HTTP API of a real 3-node cluster.

    python -m bench.consensus [--runs 3] [--clients 64] [--seconds 5] [--quick]

Prints, per run and as medians (with min-max): committed writes/s with N concurrent clients,
p50/p99 latency of sequential writes at low load, p50/p99 of sequential linearizable reads
sent to a follower (the default read: a read index confirmed by the leader), and leader
failover time (kill -9 of the leader -> the next committed write through a survivor). Ends
with one `RESULT {json}` line. Every write is a label change acknowledged only after Raft
committed it.
"""

from __future__ import annotations

import functools
import itertools
import tempfile
import time

import aiohttp

from bench.load import figures_of_run, latency, run_control_plane, throughput
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


async def failover(cluster: LocalCluster) -> float:
    leader = await cluster.leader_index()
    survivors = [cluster.nodes[i].api for i in range(3) if i != leader]
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        killed = time.monotonic()
        cluster.nodes[leader].kill9()
        for n in itertools.count():
            try:
                if await _write(session, survivors[n % 2], n):
                    elapsed = time.monotonic() - killed
                    break
            except (TimeoutError, aiohttp.ClientError):
                pass
    cluster.nodes[leader].start()
    return elapsed


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
            failover_s = await failover(cluster)
        finally:
            cluster.stop()
    return figures_of_run(samples, reads, rate, failover_s)


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
