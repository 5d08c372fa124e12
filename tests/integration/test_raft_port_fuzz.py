"""Bad input to a node's Raft port against the leader and a follower of a real 3-node
cluster: peers without a cluster certificate (plain bytes, pysyncobj's own frames of the
release before, a certificate of another CA) are cut at the TLS handshake; a peer with one
that sends garbage, truncated, oversized or unpicklable frames is cut at the frame. Each bad
connection is dropped and counted; no election follows, the leader stays, writes still
commit, and the leader's memory does not grow with what it was sent."""

from __future__ import annotations

import asyncio
import os
import pickle
import random
import socket
import ssl
import struct
import time
import zlib

import aiohttp
import pytest
from cryptography.fernet import Fernet
from pysyncobj.encryptor import getEncryptor

from node.config import load
from node.devcluster.localcluster import LocalCluster, NodeProc, wait_for
from node.pki.authority import create_authority, make_csr, new_key_pem, sign_node
from node.pki.contexts import mutual_contexts
from node.pki.store import CERT_FILE, KEY_FILE, tls_dir

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


def _send(
    address: tuple[str, int], data: bytes, tls: ssl.SSLContext | None = None
) -> tuple[bytes, bool]:
    """Send `data` on a new connection (over TLS with `tls`) and read until the node hangs up
    or stays quiet for half a second: what it answered, and whether it hung up (the node may
    cut the send or the handshake short)."""
    reply = b""
    with socket.create_connection(address, timeout=5) as raw:
        try:
            sock = tls.wrap_socket(raw) if tls is not None else raw
            sock.sendall(data)
            sock.settimeout(0.5)
            while more := sock.recv(65536):
                reply += more
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return reply, True
        except TimeoutError:
            return reply, False
    return reply, True


def _stream_junk(address: tuple[str, int], tls: ssl.SSLContext) -> float:
    """A 2 GiB length and then junk until the node hangs up; returns the seconds it took."""
    started = time.monotonic()
    chunk = random.Random(SEED).randbytes(1 << 20)
    with socket.create_connection(address, timeout=5) as raw, tls.wrap_socket(raw) as sock:
        try:
            sock.sendall(struct.pack("i", 2**31 - 1))
            for _ in range(JUNK // len(chunk)):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
    return time.monotonic() - started


def _as_node(node: NodeProc) -> ssl.SSLContext:
    """A client context presenting `node`'s certificate: what another node dials with."""
    folder = tls_dir(node.data_dir)
    with open(node.ca_file, "rb") as ca:
        return mutual_contexts(
            ca.read(), os.path.join(folder, CERT_FILE), os.path.join(folder, KEY_FILE)
        )[1]


def _foreign(folder: str, node: NodeProc) -> ssl.SSLContext:
    """A client presenting a certificate of another CA (same node id and address)."""
    other = create_authority("ffffffffffffffff", time.time())
    key = new_key_pem()
    node_id = load(node.data_dir).identity.node_id
    cert = sign_node(
        other,
        make_csr(node_id, key),
        node_id=node_id,
        address=node.address,
        lifetime=60,
        now=time.time(),
    )
    cert_path, key_path = (
        os.path.join(folder, "foreign.pem"),
        os.path.join(folder, "foreign-key.pem"),
    )
    with open(cert_path, "wb") as f:
        f.write(cert)
    with open(key_path, "wb") as f:
        f.write(key)
    with open(node.ca_file, "rb") as ca:
        return mutual_contexts(ca.read(), cert_path, key_path)[1]


def _unauthenticated(key: Fernet) -> list[tuple[str, bytes]]:
    """What a peer without TLS sends: cut at the handshake."""
    rng = random.Random(SEED)
    cases = [("garbage", rng.randbytes(rng.randint(1, 70_000))) for _ in range(10)]
    cases += [("framed garbage", _frame(rng.randbytes(rng.randint(1, 60_000)))) for _ in range(5)]
    # pysyncobj's own key exchange under the cluster key, as the release before opens.
    cases += [("plain handshake", _sealed(key, os.urandom(32))) for _ in range(5)]
    return cases


def _bad_frames() -> list[tuple[str, bytes]]:
    """What a peer with a cluster certificate may still send wrong: cut at the frame."""
    rng = random.Random(SEED)
    cases = [("garbage", rng.randbytes(rng.randint(1, 70_000))) for _ in range(10)]
    cases += [("framed garbage", _frame(rng.randbytes(rng.randint(1, 60_000)))) for _ in range(20)]
    cases += [("negative length", struct.pack("i", -rng.randint(1, 2**31)) + b"x" * 64)]
    cases += [("truncated", _frame(rng.randbytes(4096))[: rng.randint(1, 4000)]) for _ in range(3)]
    cases += [("unpicklable", _frame(zlib.compress(pickle.dumps(_Forbidden(), 2))))] * 5
    cases += [("not zlib", _frame(rng.randbytes(100))) for _ in range(5)]
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


def _may_wait(data: bytes) -> bool:
    """Whether `data` ends inside a frame whose length is within the bound: the node waits
    for the rest (a truncated frame ends with its sender) instead of hanging up."""
    if len(data) < 4:
        return True
    (size,) = struct.unpack("i", data[:4])
    return 0 <= size <= 16 * 1024 * 1024 and len(data) - 4 < size


async def test_bad_peers_and_frames_are_dropped_and_counted_and_the_cluster_carries_on(
    cluster, tmp_path
):
    leader_i = await cluster.leader_index()
    follower_i = next(i for i in range(3) if i != leader_i)
    other_i = next(i for i in range(3) if i not in (leader_i, follower_i))
    before = (await cluster.get(leader_i, "/v1/cluster"))["term"]
    stored = load(cluster.nodes[leader_i].data_dir)
    key = getEncryptor(stored.identity.keys.raft_password)
    leader = cluster.nodes[leader_i]
    rss_before = _rss_mb(leader.proc.pid)
    as_node = _as_node(cluster.nodes[other_i])
    foreign = _foreign(str(tmp_path), cluster.nodes[other_i])
    refused = {leader_i: 0, follower_i: 0}
    dropped = {leader_i: 0, follower_i: 0}
    for target in refused:
        address = _raft_port(cluster.nodes[target])
        for kind, data in _unauthenticated(key):
            _, hung_up = await asyncio.to_thread(_send, address, data)
            assert hung_up, f"{kind} without TLS: the connection was kept"
            refused[target] += 1
        for _ in range(3):
            _, hung_up = await asyncio.to_thread(_send, address, b"\x00" * 16, foreign)
            assert hung_up, "a certificate of another CA: the connection was kept"
            refused[target] += 1
        for kind, data in _bad_frames():
            _, hung_up = await asyncio.to_thread(_send, address, data, as_node)
            assert hung_up or _may_wait(data), f"{kind}: the connection was kept"
            dropped[target] += hung_up
        assert await asyncio.to_thread(_stream_junk, address, as_node) < 5
        dropped[target] += 1

    assert _rss_mb(leader.proc.pid) - rss_before < 16, "the leader's memory grew with the junk"
    for i in refused:
        handshake, oversized, malformed = (
            await _metric(cluster, i, "handshake"),
            await _metric(cluster, i, "oversized"),
            await _metric(cluster, i, "malformed"),
        )
        assert handshake >= refused[i], (i, handshake, refused[i])
        assert oversized >= 2 and malformed >= 20  # framed garbage, unpicklable, not zlib
        assert oversized + malformed >= dropped[i]

    # No election: the leader and the term are as they were, and a write still commits.
    status = await cluster.get(leader_i, "/v1/cluster")
    assert (status["term"], await cluster.leader_index()) == (before, leader_i)
    async with cluster.nodes[follower_i].client() as client:
        await client.patch(f"/v1/nodes/{leader.name}", {"add_labels": {"fuzzed": "yes"}})

    async def healthy() -> bool:
        return all([(await cluster.get(i, "/healthz"))["ok"] for i in range(3)])

    await wait_for(healthy, timeout=10, what="every node healthy")
