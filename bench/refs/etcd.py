"""etcd beside Shoal's control plane: 3 members on loopback, the same client and concurrency.

    python -m bench.refs.etcd [--runs 3] [--clients 64] [--seconds 5] [--quick]

The same measurements as bench.consensus, against etcd 3.4 (Debian's etcd-server, installed
when missing) through its JSON gateway (`POST /v3/kv/put`, base64 key and a 100-byte value)
with an aiohttp client: committed writes/s with N concurrent clients on the leader, p50/p99 of
sequential writes at low load, p50/p99 of sequential reads of a written key sent to a follower
(`POST /v3/kv/range` as etcd serves it by default: linearizable, not `serializable`), and
leader failover (the leader paused by SIGSTOP, then killed by kill -9 -> the next write
committed through a survivor). etcd keeps its defaults (heartbeat 100 ms, election 1 s), as
operators run it. Medians with min-max; ends with one `RESULT {json}` line.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import signal
import socket
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.load import (
    WRITE_TIMEOUT,
    figures_of_run,
    first_commit_after,
    latency,
    run_control_plane,
    throughput,
)
from bench.refs.support import Processes, ensure_debian

HOST = "127.0.0.1"
VALUE = base64.b64encode(b"v" * 100).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class EtcdCluster:
    """Three etcd members on loopback ports; `Processes` owns them."""

    def __init__(self, procs: Processes, work: Path, size: int = 3) -> None:
        self.names = [f"e{i}" for i in range(size)]
        self.client_ports = [free_port() for _ in self.names]
        self.peer_ports = [free_port() for _ in self.names]
        self.procs = procs
        self.work = work
        self.members: list = []

    def client_url(self, i: int) -> str:
        return f"http://{HOST}:{self.client_ports[i]}"

    def start(self) -> None:
        initial = ",".join(
            f"{name}=http://{HOST}:{port}"
            for name, port in zip(self.names, self.peer_ports, strict=True)
        )
        for i, name in enumerate(self.names):
            self.members.append(
                self.procs.start(
                    [
                        "etcd",
                        "--name",
                        name,
                        "--data-dir",
                        str(self.work / name),
                        "--listen-client-urls",
                        self.client_url(i),
                        "--advertise-client-urls",
                        self.client_url(i),
                        "--listen-peer-urls",
                        f"http://{HOST}:{self.peer_ports[i]}",
                        "--initial-advertise-peer-urls",
                        f"http://{HOST}:{self.peer_ports[i]}",
                        "--initial-cluster",
                        initial,
                        "--initial-cluster-token",
                        "shoal-bench",
                        "--initial-cluster-state",
                        "new",
                        "--log-level",
                        "error",
                    ],
                    self.work / f"{name}.log",
                )
            )

    async def leader_index(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> int:
        """The member every live member names leader (etcd's status names it by member id)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids, leaders = {}, set()
            for i, proc in enumerate(self.members):
                if proc.poll() is not None:
                    continue
                try:
                    async with session.post(
                        f"{self.client_url(i)}/v3/maintenance/status",
                        json={},
                        timeout=WRITE_TIMEOUT,
                    ) as resp:
                        status = await resp.json()
                    ids[status["header"]["member_id"]] = i
                    leaders.add(status.get("leader"))
                except (TimeoutError, aiohttp.ClientError, KeyError):
                    leaders.add(None)
            if len(leaders) == 1 and (leader := leaders.pop()) in ids:
                return ids[leader]
            await asyncio.sleep(0.1)
        raise RuntimeError(f"etcd members agreed on no leader within {timeout:g} s")


async def _put_to(url: str, session: aiohttp.ClientSession, n: int) -> bool:
    return await put(session, url, n)


async def put(session: aiohttp.ClientSession, url: str, n: int) -> bool:
    key = base64.b64encode(f"bench/{n % 1000}".encode()).decode()
    async with session.post(
        f"{url}/v3/kv/put", json={"key": key, "value": VALUE}, timeout=WRITE_TIMEOUT
    ) as resp:
        await resp.read()
        return resp.status == 200


async def range_read(url: str, session: aiohttp.ClientSession, n: int) -> bool:
    """etcd's default range read: linearizable (a ReadIndex round through the leader)."""
    key = base64.b64encode(f"bench/{n % 1000}".encode()).decode()
    async with session.post(f"{url}/v3/kv/range", json={"key": key}, timeout=WRITE_TIMEOUT) as resp:
        await resp.read()
        return resp.status == 200


async def failover(cluster: EtcdCluster, session: aiohttp.ClientSession, how: str) -> float:
    """The leader paused (SIGSTOP, resumed once measured) or killed (kill -9) -> the first
    write a survivor commits."""
    leader = await cluster.leader_index(session)
    survivors = [cluster.client_url(i) for i in range(len(cluster.members)) if i != leader]
    member = cluster.members[leader]

    def fault() -> None:
        if how == "pause":
            os.kill(member.pid, signal.SIGSTOP)
        else:
            member.kill()
            member.wait()

    async def write(attempts: aiohttp.ClientSession, n: int) -> bool:
        return await put(attempts, survivors[n % len(survivors)], n)

    took = await first_commit_after(fault, write)
    if how == "pause":
        os.kill(member.pid, signal.SIGCONT)
        await cluster.leader_index(session)  # every member agrees again, the resumed one too
    return took


async def one_run(clients: int, seconds: float, latency_count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-etcd-") as tmp, Processes() as procs:
        cluster = EtcdCluster(procs, Path(tmp))
        cluster.start()
        async with aiohttp.ClientSession() as session:
            leader = await cluster.leader_index(session)
            write = functools.partial(_put_to, cluster.client_url(leader))
            await latency(write, 50)  # warm up, as bench.consensus does
            samples = await latency(write, latency_count)
            read = functools.partial(range_read, cluster.client_url((leader + 1) % 3))
            await latency(read, 50, "read")
            reads = await latency(read, latency_count, "read")
            rate = await throughput(write, clients, seconds)
            paused_s = await failover(cluster, session, "pause")
            killed_s = await failover(cluster, session, "kill")
    return figures_of_run(samples, reads, rate, paused_s, killed_s)


def main() -> None:
    ensure_debian({"etcd": "etcd-server"})
    run_control_plane("python -m bench.refs.etcd", "etcd", one_run, {"system": "etcd"})


if __name__ == "__main__":
    main()
