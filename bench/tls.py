"""What TLS costs. The API: the same writes (a node label, committed through Raft on 3 local
nodes) over HTTPS to the leader's TCP port and over plain HTTP on its unix socket, sequential
(p50) and with 32 concurrent writers (writes/s); and the cost of a new TLS connection (TCP
connect plus handshake, beside a TCP connect alone). Raft: 3 voters in one process, the same
writes with 64 concurrent writers and sequentially, over mutual TLS 1.3 (as nodes run), with
no encryption at all, and under pysyncobj's own encryption (Fernet, the release before).
Ends with one `RESULT {json}` line.

    python -m bench.tls [--writes 300] [--seconds 5] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time

import aiohttp
import uvloop

from bench.lb import free_port
from bench.stats import print_figures, summarize_runs
from consensus.model import Node
from consensus.nodes import RegisterNode
from consensus.raft import RaftNode, RaftTls
from node.devcluster.localcluster import LocalCluster, auth_for, ssl_for
from node.local_socket import socket_path
from node.pki.authority import create_authority, make_csr, new_key_pem, sign_node
from node.pki.contexts import mutual_contexts

CLIENTS = 32
RAFT_WRITERS = 64
RAFT_TRANSPORTS = ("tls", "none", "fernet")


async def _writes(
    session: aiohttp.ClientSession, base: str, headers: dict, count: int, seconds: float
) -> tuple[float, float]:
    async def write(n: int) -> None:
        async with session.patch(
            f"{base}/v1/nodes/n1", headers=headers, json={"add_labels": {"bench": str(n)}}
        ) as resp:
            await resp.read()
            assert resp.status == 200, resp.status

    for n in range(30):  # warm up
        await write(n)
    samples = []
    for n in range(count):
        started = time.perf_counter()
        await write(n)
        samples.append((time.perf_counter() - started) * 1000)
    done = 0
    deadline = time.monotonic() + seconds

    async def writer(k: int) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await write(k * 1_000_000 + done)
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(writer(k) for k in range(CLIENTS)))
    return statistics.median(samples), done / (time.monotonic() - started)


async def _connect_ms(host: str, port: int, tls, count: int) -> float:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        _, writer = await asyncio.open_connection(host, port, ssl=tls)
        samples.append((time.perf_counter() - started) * 1000)
        writer.close()
        await writer.wait_closed()
    return statistics.median(samples)


def _raft_voters(base: str, transport: str) -> tuple[list[str], list[RaftNode]]:
    authority = create_authority("bench", time.time())
    addresses = [f"127.0.0.1:{free_port('127.0.0.1')}" for _ in range(3)]
    nodes = []
    for i, address in enumerate(addresses):
        tls = None
        if transport == "tls":
            key, name, node_id = new_key_pem(), f"{base}/n{i}", f"{i:016x}"
            cert = sign_node(
                authority,
                make_csr(node_id, key),
                node_id=node_id,
                address="127.0.0.1",
                lifetime=3600,
                now=time.time(),
            )
            with open(f"{name}.pem", "wb") as f:
                f.write(cert)
            with open(f"{name}-key.pem", "wb") as f:
                f.write(key)
            pair = mutual_contexts(authority.cert_pem, f"{name}.pem", f"{name}-key.pem")
            tls = RaftTls(lambda pair=pair: pair)
        password = "bench-password" if transport == "fernet" else None
        nodes.append(
            RaftNode(data_dir=f"{base}/{transport}{i}", address=address, password=password, tls=tls)
        )
    return addresses, nodes


async def _raft_writes(transport: str, writes: int, seconds: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-raft-") as base:
        addresses, nodes = _raft_voters(base, transport)
        for node in nodes:
            node.start("voter", addresses)
        try:
            deadline = time.monotonic() + 15
            while not any(n.is_leader() for n in nodes):
                assert time.monotonic() < deadline, "no Raft leader"
                await asyncio.sleep(0.05)
            leader = next(n for n in nodes if n.is_leader())

            async def write(n: int) -> None:
                record = Node(
                    id="n1", name="n1", address="127.0.0.1", api_port=1, raft_port=2, gossip_port=n
                )
                await leader.propose(RegisterNode(record), timeout=5)

            for n in range(30):
                await write(n + 1)
            samples = []
            for n in range(writes):
                started = time.perf_counter()
                await write(n + 1)
                samples.append((time.perf_counter() - started) * 1000)
            done = 0
            stop = time.monotonic() + seconds

            async def writer() -> None:
                nonlocal done
                while time.monotonic() < stop:
                    await write(done % 60000 + 1)
                    done += 1

            started = time.monotonic()
            await asyncio.gather(*(writer() for _ in range(RAFT_WRITERS)))
            return statistics.median(samples), done / (time.monotonic() - started)
        finally:
            for node in nodes:
                node.stop()


async def run(writes: int, seconds: float, first: int = 0) -> dict:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as base:
        cluster = LocalCluster(base, 3, ["--runtime", "process"])
        try:
            await cluster.start()

            await cluster.wait_voters(3)
            leader = cluster.nodes[await cluster.leader_index()]
            tls = aiohttp.TCPConnector(ssl=ssl_for(leader.api), limit=CLIENTS)
            async with aiohttp.ClientSession(connector=tls) as session:
                tls_p50, tls_rate = await _writes(
                    session, leader.url, auth_for(leader.api), writes, seconds
                )
            plain = aiohttp.UnixConnector(socket_path(leader.data_dir), limit=CLIENTS)
            async with aiohttp.ClientSession(connector=plain) as session:
                plain_p50, plain_rate = await _writes(
                    session, "http://localhost", {}, writes, seconds
                )
            host, port = leader.api.split(":")
            handshake = await _connect_ms(host, int(port), ssl_for(leader.api), 100)
            tcp = await _connect_ms(host, int(port), None, 100)
        finally:
            cluster.stop()
    raft = {}
    # Each run starts with another transport, so none is always the one measured first.
    for k in range(len(RAFT_TRANSPORTS)):
        transport = RAFT_TRANSPORTS[(first + k) % len(RAFT_TRANSPORTS)]
        raft[transport] = await _raft_writes(transport, writes, seconds)
    return {
        **{f"raft_{t}_write_p50_ms": round(raft[t][0], 3) for t in RAFT_TRANSPORTS},
        **{f"raft_{t}_writes_per_s": round(raft[t][1], 1) for t in RAFT_TRANSPORTS},
        "raft_tls_p50_change_pct": round(100 * (raft["tls"][0] / raft["none"][0] - 1), 1),
        "raft_tls_rate_change_pct": round(100 * (raft["tls"][1] / raft["none"][1] - 1), 1),
        "tls_write_p50_ms": round(tls_p50, 3),
        "plain_write_p50_ms": round(plain_p50, 3),
        "tls_writes_per_s": round(tls_rate, 1),
        "plain_writes_per_s": round(plain_rate, 1),
        "p50_change_pct": round(100 * (tls_p50 / plain_p50 - 1), 1),
        "rate_change_pct": round(100 * (tls_rate / plain_rate - 1), 1),
        "tls_connect_handshake_ms": round(handshake, 3),
        "tcp_connect_ms": round(tcp, 3),
        "handshake_cost_ms": round(handshake - tcp, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tls")
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    # On uvloop, as nodes run: asyncio's own TLS is pure Python and would bill its cost to TLS.
    runs = [uvloop.run(run(args.writes, args.seconds, n)) for n in range(args.runs)]
    figures = summarize_runs(runs)
    print_figures("TLS against none", figures, args.runs)
    print("RESULT " + json.dumps(figures))


if __name__ == "__main__":
    main()
