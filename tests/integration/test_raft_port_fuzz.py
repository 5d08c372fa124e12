"""Bad input to a node's Raft port: garbage, wrong-key, truncated, oversized and replayed
frames against the leader and a follower of a real 3-node cluster. Each bad connection is
dropped and counted; no election follows, the leader stays, writes still commit, and the
leader's memory does not grow with what it was sent."""

from __future__ import annotations

import asyncio
import os
import pickle
import random
import socket
import struct
import time
import zlib

import aiohttp
import pytest
from cryptography.fernet import Fernet
from pysyncobj.encryptor import getEncryptor

from node.config import load
from node.devcluster.localcluster import LocalCluster, NodeProc, wait_for

pytestmark = pytest.mark.timeout(90)

SEED = 15
JUNK = 24 * 1024 * 1024  # sent behind a 2 GiB length: without a bound, all of it is buffered


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _raft_port(node: NodeProc) -> tuple[str, int]:
    return node.address, node.api_port + 1


def _frame(data: bytes) -> bytes:
    return struct.pack("i", len(data)) + data


def _sealed(key: Fernet, message: object) -> bytes:
    """A frame as pysyncobj seals one: pickled, compressed, encrypted, length-prefixed."""
    return _frame(
        key.encrypt_at_time(zlib.compress(pickle.dumps(message, 2)), int(time.monotonic()))
    )


class _Forbidden:
    def __reduce__(self):
        return (os.system, ("true",))


def _send(address: tuple[str, int], data: bytes) -> tuple[bytes, bool]:
    """Send `data` on a new connection and read until the node hangs up or stays quiet for
    half a second: what it answered, and whether it hung up (the node may cut the send short)."""
    reply = b""
    with socket.create_connection(address, timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.settimeout(0.5)
            while more := sock.recv(65536):
                reply += more
        except (BrokenPipeError, ConnectionResetError):
            return reply, True
        except TimeoutError:
            return reply, False
    return reply, True


def _stream_junk(address: tuple[str, int]) -> float:
    """A 2 GiB length and then junk until the node hangs up; returns the seconds it took."""
    started = time.monotonic()
    chunk = random.Random(SEED).randbytes(1 << 20)
    with socket.create_connection(address, timeout=5) as sock:
        try:
            sock.sendall(struct.pack("i", 2**31 - 1))
            for _ in range(JUNK // len(chunk)):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
    return time.monotonic() - started


def _bad_inputs(key: Fernet) -> list[tuple[str, bytes]]:
    rng = random.Random(SEED)
    wrong = Fernet(Fernet.generate_key())
    cases = [("garbage", rng.randbytes(rng.randint(1, 70_000))) for _ in range(30)]
    cases += [("framed garbage", _frame(rng.randbytes(rng.randint(1, 60_000)))) for _ in range(30)]
    cases += [("negative length", struct.pack("i", -rng.randint(1, 2**31)) + b"x" * 64)]
    cases += [("truncated", _frame(rng.randbytes(4096))[: rng.randint(1, 4000)]) for _ in range(3)]
    cases += [("wrong key", _sealed(wrong, os.urandom(32))) for _ in range(10)]
    cases += [("unpicklable", _sealed(key, _Forbidden())) for _ in range(5)]
    cases += [("not zlib", _frame(key.encrypt(rng.randbytes(100)))) for _ in range(5)]
    return cases


async def _metric(cluster: LocalCluster, i: int, reason: str) -> float:
    node = cluster.nodes[i]
    headers = {"Authorization": f"Bearer {node.api_token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{node.url}/metrics", headers=headers, ssl=node.ssl_context()) as resp,
    ):
        text = await resp.text()
    prefix = f'shoal_raft_port_dropped_total{{reason="{reason}"}} '
    return float(next(line for line in text.splitlines() if line.startswith(prefix)).split()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalCluster(str(tmp_path_factory.mktemp("fuzz")), 3, ["--runtime", "process"])
    try:
        asyncio.run(cluster.start())
        yield cluster
    finally:
        cluster.stop()


async def test_bad_frames_are_dropped_and_counted_and_the_cluster_carries_on(cluster):
    leader_i = await cluster.leader_index()
    follower_i = next(i for i in range(3) if i != leader_i)
    before = (await cluster.get(leader_i, "/v1/cluster"))["term"]
    stored = load(cluster.nodes[leader_i].data_dir)
    key = getEncryptor(stored.identity.keys.raft_password)
    leader = cluster.nodes[leader_i]
    rss_before = _rss_mb(leader.proc.pid)
    cases = _bad_inputs(key)
    dropped = {leader_i: 0, follower_i: 0}
    for target in dropped:
        address = _raft_port(cluster.nodes[target])
        for kind, data in cases:
            _, hung_up = await asyncio.to_thread(_send, address, data)
            assert hung_up or kind == "truncated", f"{kind}: the connection was kept"
            dropped[target] += kind != "truncated"  # a truncated frame ends with its sender
        # A replayed session: the handshake is accepted (it is only a random key), and the
        # next frame, which carries the key the node gave another connection, is refused.
        handshake = _sealed(key, os.urandom(32))
        reply, hung_up = await asyncio.to_thread(_send, address, handshake)
        assert reply and not hung_up, "the node did not answer an authentic handshake"
        stale = _sealed(key, (os.urandom(32), {"type": "append_entries", "term": 10**9}))
        _, hung_up = await asyncio.to_thread(_send, address, handshake + stale)
        assert hung_up, "a replayed frame was accepted"
        assert await asyncio.to_thread(_stream_junk, address) < 5
        dropped[target] += 2

    assert _rss_mb(leader.proc.pid) - rss_before < 16, "the leader's memory grew with the junk"
    for i, count in dropped.items():
        oversized, malformed = (
            await _metric(cluster, i, "oversized"),
            await _metric(cluster, i, "malformed"),
        )
        assert oversized >= 2 and malformed >= 40  # wrong key, unpicklable, replayed, ...
        assert oversized + malformed >= count

    # No election: the leader and the term are as they were, and a write still commits.
    status = await cluster.get(leader_i, "/v1/cluster")
    assert (status["term"], await cluster.leader_index()) == (before, leader_i)
    async with cluster.nodes[follower_i].client() as client:
        await client.patch(f"/v1/nodes/{leader.name}", {"add_labels": {"fuzzed": "yes"}})

    async def healthy() -> bool:
        return all([(await cluster.get(i, "/healthz"))["ok"] for i in range(3)])

    await wait_for(healthy, timeout=10, what="every node healthy")
