"""Raft over mutual TLS 1.3 (consensus.raft.RaftTls), with real replicas on loopback: writes
commit over TLS; a peer whose certificate the cluster's CA did not sign, one without TLS,
and one that never finishes its handshake are cut and counted; a node of the release before
(pysyncobj's plain transport under the cluster password) is served while the cluster allows
plain connections, and cut off once it does not."""

from __future__ import annotations

import asyncio
import pickle
import socket
import ssl
import struct
import time
import zlib

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus import raft as raft_module
from consensus.model import Node
from consensus.nodes import RegisterNode
from consensus.raft import RAFT_PORT_DROPS, RaftNode, RaftTls
from node.pki.authority import Authority, create_authority, make_csr, new_key_pem, sign_node
from node.pki.contexts import mutual_contexts
from tests.unit.consensus.test_raft_changes import free_port

pytestmark = pytest.mark.timeout(60)


def node_contexts(folder, authority: Authority, name: str, trusted: bytes | None = None):
    key = new_key_pem()
    node_id = name.encode().hex().ljust(16, "0")
    cert = sign_node(
        authority,
        make_csr(node_id, key),
        node_id=node_id,
        address="127.0.0.1",
        lifetime=3600,
        now=time.time(),
    )
    (folder / f"{name}.pem").write_bytes(cert)
    (folder / f"{name}-key.pem").write_bytes(key)
    return mutual_contexts(
        trusted or authority.cert_pem, str(folder / f"{name}.pem"), str(folder / f"{name}-key.pem")
    )


class Plain:
    """A switch for `RaftTls.plain`."""

    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed

    def __call__(self) -> bool:
        return self.allowed


def voters(tmp_path, authority, count=3, plain=None, legacy=()):
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(count)]
    made = []
    for i, address in enumerate(addresses):
        pair = node_contexts(tmp_path, authority, f"n{i}")
        tls = None if i in legacy else RaftTls(lambda pair=pair: pair, plain or Plain(False))
        made.append(
            RaftNode(data_dir=str(tmp_path / f"d{i}"), address=address, password="pw", tls=tls)
        )
    return addresses, made


async def leader_of(nodes, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [n for n in nodes if n.is_leader()]
        if leaders:
            return leaders[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no leader elected")


async def writes_commit(nodes, count=20):
    leader = await leader_of(nodes)
    for i in range(count):
        record = Node(
            id="id1",
            name="n1",
            address="127.0.0.1",
            api_port=7420,
            raft_port=7421,
            gossip_port=i + 1,
        )
        await leader.propose(RegisterNode(record), timeout=5)
    return leader


def connected(nodes) -> bool:
    return all(len(n.status().connected_partners) == len(n.status().partners) for n in nodes)


async def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def handshake_as(address: str, context: ssl.SSLContext) -> str:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(b"x" * 100)
                return "kept" if tls.recv(1) else "closed"
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            return type(exc).__name__


async def test_writes_commit_over_tls_and_strangers_are_cut_and_counted(tmp_path):
    authority = create_authority("c1", time.time())
    addresses, nodes = voters(tmp_path, authority)
    for node in nodes:
        node.start("voter", addresses)
    try:
        await writes_commit(nodes)
        await wait_until(lambda: connected(nodes), 10, "every voter connected")
        before = RAFT_PORT_DROPS.handshake
        target = addresses[0]

        # A certificate of another CA (the server refuses it), and none at all.
        foreign = node_contexts(
            tmp_path, create_authority("c2", time.time()), "x", authority.cert_pem
        )[1]
        assert await asyncio.to_thread(handshake_as, target, foreign) != "kept"
        anonymous = ssl.create_default_context(cadata=authority.cert_pem.decode())
        anonymous.check_hostname = False
        assert await asyncio.to_thread(handshake_as, target, anonymous) != "kept"
        # Not TLS at all: a frame of the release before.
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(b"\x10\x00\x00\x00" + b"x" * 16)
            assert raw.recv(100) == b""
        await wait_until(lambda: RAFT_PORT_DROPS.handshake >= before + 3, 5, "3 drops counted")
        await writes_commit(nodes, 5)
    finally:
        for node in nodes:
            node.stop()


async def test_a_handshake_that_does_not_finish_is_cut_in_time(tmp_path, monkeypatch):
    monkeypatch.setattr(raft_module, "_HANDSHAKE_TIMEOUT", 0.5)
    authority = create_authority("c1", time.time())
    addresses, nodes = voters(tmp_path, authority, count=1)
    nodes[0].start("voter", addresses)
    try:
        before = RAFT_PORT_DROPS.handshake
        host, port = addresses[0].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(b"\x16\x03")  # the start of a handshake, and no more
            started = time.monotonic()
            assert raw.recv(100) == b""
            assert time.monotonic() - started < 3
        assert RAFT_PORT_DROPS.handshake == before + 1
    finally:
        nodes[0].stop()


async def test_a_node_of_the_release_before_is_served_until_the_cluster_seals_tls(tmp_path):
    authority = create_authority("c1", time.time())
    plain = Plain(True)
    addresses, nodes = voters(tmp_path, authority, plain=plain, legacy=(1,))
    for node in nodes:
        node.start("voter", addresses)
    try:
        await writes_commit(nodes)
        await wait_until(lambda: connected(nodes), 10, "the plain node connected both ways")
        old = nodes[1]
        plain.allowed = False
        await wait_until(lambda: not old.status().connected_partners, 10, "the plain node cut off")
        tls_nodes = [nodes[0], nodes[2]]
        await wait_until(
            lambda: all(
                n.status().connected_partners == (addresses[2 - nodes.index(n)],) for n in tls_nodes
            ),
            10,
            "the TLS nodes still connected to each other",
        )
        await writes_commit(tls_nodes, 5)
    finally:
        for node in nodes:
            node.stop()


def node_id_of(name: str) -> str:
    return name.encode().hex().ljust(16, "0")  # as node_contexts names a node


def speak_as(address: str, context: ssl.SSLContext, message) -> bytes:
    """Open a TLS connection to a Raft port and send one pysyncobj frame; what comes back
    before the peer closes (b"" when it closes at once)."""
    host, port = address.rsplit(":", 1)
    data = zlib.compress(pickle.dumps(message), 3)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(struct.pack("i", len(data)) + data)
        try:
            return tls.recv(4096)
        except (ssl.SSLError, ConnectionError):
            return b""


async def test_a_certified_peer_speaks_raft_only_as_itself_and_sends_no_utility_command(
    tmp_path,
):
    """A node's certificate opens Raft only under that node's own address: not as another
    voter (it would take that voter's place in the leader's eyes), and never for pysyncobj's
    utility commands, which would add or remove voters past the API."""
    authority = create_authority("c1", time.time())
    addresses, nodes = voters(tmp_path, authority)
    for node in nodes:
        node.start("voter", addresses)
    try:
        leader = await leader_of(nodes)
        for i, address in enumerate(addresses):
            record = Node(
                id=node_id_of(f"n{i}"),
                name=f"n{i}",
                address="127.0.0.1",
                api_port=1,
                raft_port=int(address.rsplit(":", 1)[1]),
                gossip_port=1,
            )
            await leader.propose(RegisterNode(record), timeout=5)
        await wait_until(lambda: all(n.applied() >= leader.applied() for n in nodes), 10, "all")
        await wait_until(lambda: connected(nodes), 10, "every voter connected")
        target = addresses[0]
        n1 = node_contexts(tmp_path, authority, "n1")[1]
        stranger = node_contexts(tmp_path, authority, "x")[1]
        before = RAFT_PORT_DROPS.refused
        cases = [
            (n1, addresses[2]),  # n1's certificate claiming to be n2
            (stranger, addresses[1]),  # a certified node the state does not know, as n1
            (n1, ["status"]),
            (n1, ["add", "127.0.0.1:1"]),
            (n1, ["remove", addresses[2]]),
        ]
        for context, message in cases:
            answer = await asyncio.to_thread(speak_as, target, context, message)
            assert answer == b"", f"{message!r} was answered: {answer[:100]!r}"
        await wait_until(
            lambda: RAFT_PORT_DROPS.refused == before + len(cases), 5, "every refusal counted"
        )
        assert all(
            sorted(n.status().partners) == sorted(a for a in addresses if a != n.address)
            for n in nodes
        )
        await writes_commit(nodes, 5)
        assert all(n.status().term == leader.status().term for n in nodes)
    finally:
        for node in nodes:
            node.stop()
