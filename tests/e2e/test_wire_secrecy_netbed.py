"""Nothing secret crosses the network in clear: three Shoal nodes (process runtime) on three
hosts of the test bed, while every frame on the bed's bridge is captured from before the
first node starts.

The nodes join with the join token; an admin makes a scoped token, which creates a secret
through a follower; a service on another node mounts it and prints its hash; labels are
written and read through a follower (forwarded to the leader) and Raft replicates them to
every node. The capture holds traffic on the API, Raft and gossip ports between the hosts,
and a marker sent in clear, split over two TCP segments, is found in it (the search works);
the API token, the scoped token, the join token's secret and the secret's value (plain or
base64) are in no frame and no reassembled stream. Every Raft connection between the hosts
is TLS from its first byte: a sequence of TLS records, the servers choose TLS 1.3, and what
the nodes replicate travels as application data records."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
import struct
import sys

import aiohttp
import pytest

from node.client import ShoalClient
from node.devcluster.localcluster import wait_for
from node.security import JoinToken
from tests.netbed.capture import Capture
from tests.safety.shoal_bed import API_PORT, BedCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

RAFT_PORT, GOSSIP_PORT = API_PORT + 1, API_PORT + 2
SECRET = "wire-secret"
# Prints the hash of the secret it mounts, never the secret.
READER = 'sha256sum "$SHOAL_SECRETS_DIR/wire-secret" | cut -d" " -f1; exec sleep 300'
# Run on a host: sends a marker to the test process in two TCP segments.
SPLIT_SENDER = """
import socket, sys, time
marker = sys.argv[3].encode()
with socket.create_connection((sys.argv[1], int(sys.argv[2]))) as sock:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(marker[:8])
    time.sleep(0.2)
    sock.sendall(marker[8:])
"""


def test_no_token_and_no_secret_crosses_the_bridge_in_clear(netbed_factory, tmp_path):
    bed = netbed_factory(3)
    capture = Capture(bed.bridge)
    try:
        needles = asyncio.run(_scenario(bed, tmp_path))
        control = _send_split_marker(bed)
    finally:
        capture.close()
    segments = capture.segments()
    hosts = {host.address for host in bed.hosts}
    between_hosts = [s for s in segments if s.payload and {s.src, s.dst} <= hosts]
    carried = {
        port: sum(1 for s in between_hosts if port in (s.sport, s.dport))
        for port in (API_PORT, RAFT_PORT, GOSSIP_PORT)
    }
    print(f"captured {len(capture.frames)} frames; payloads between hosts by port: {carried}")
    assert all(carried.values()), f"no traffic between the hosts on a port: {carried}"
    assert any(s.dport == API_PORT and bed.gateway == s.src for s in segments), (
        "the test's own API calls crossed the bridge"
    )
    wire, streams = b"".join(capture.frames), capture.streams()
    assert not any(control in frame for frame in capture.frames), "the marker was split"
    assert any(control in stream for stream in streams), "the capture reads what is in clear"
    leaked = [
        name
        for name, needle in needles.items()
        if needle in wire or any(needle in stream for stream in streams)
    ]
    assert leaked == [], f"in clear on the bridge: {leaked}"
    raft = {f: data for f, data in capture.flows().items() if RAFT_PORT in (f[1], f[3])}
    raft = {f: data for f, data in raft.items() if {f[0], f[2]} <= hosts}
    _assert_tls13(raft)


# TLS record types, and the supported_versions extension of a ServerHello choosing TLS 1.3.
HANDSHAKE, APPLICATION_DATA = 22, 23
RECORD_TYPES = {20, 21, HANDSHAKE, APPLICATION_DATA}
CHOSE_TLS13 = b"\x00\x2b\x00\x02\x03\x04"


def _records(stream: bytes) -> list[tuple[int, bytes]]:
    """A stream read as TLS records (type, body); fails on the first byte that is not one
    (the capture may end inside the last record)."""
    records, at = [], 0
    while at + 5 <= len(stream):
        kind, version, length = struct.unpack("!BHH", stream[at : at + 5])
        assert kind in RECORD_TYPES and version in (0x0301, 0x0303), (
            f"not a TLS record at byte {at}: {stream[at : at + 8].hex()}"
        )
        assert length <= 2**14 + 256, f"a TLS record of {length} bytes at byte {at}"
        records.append((kind, stream[at + 5 : at + 5 + length]))
        at += 5 + length
    return records


def _assert_tls13(raft: dict[tuple[str, int, str, int], bytes]) -> None:
    assert raft, "no Raft connection between the hosts was captured"
    replicated = 0
    for (src, sport, dst, dport), stream in raft.items():
        records = _records(stream)
        assert records and records[0][0] == HANDSHAKE, f"{src}:{sport} -> {dst}:{dport}"
        if sport == RAFT_PORT:  # the server's side opens with its ServerHello
            assert CHOSE_TLS13 in records[0][1], f"{src}:{sport} did not choose TLS 1.3"
        replicated += sum(len(body) for kind, body in records if kind == APPLICATION_DATA)
    print(f"raft: {len(raft)} TLS streams, {replicated} bytes of application data")
    assert replicated > 10_000, "the nodes replicated nothing over TLS"


async def _scenario(bed, tmp_path) -> dict[str, bytes]:
    """Forms the cluster and runs the traffic; the strings that must not be seen."""
    marker = f"WIRE-SECRET-{secrets.token_hex(12)}".encode()
    async with aiohttp.ClientSession() as session:
        cluster = BedCluster(bed, tmp_path / "nodes", session)
        try:
            await cluster.form()
            leader = await cluster.wait_leader()
            follower, runner = [name for name in cluster.names if name != leader]

            def client(name: str, token: str) -> ShoalClient:
                address = f"{cluster.hosts[name].address}:{API_PORT}"
                return ShoalClient(address, token, session=session, ssl_context=cluster.ssl_context)

            admin = client(follower, cluster.api_token)
            made = await admin.request("POST", "/v1/tokens", json_body={"role": "operator"})
            operator = client(follower, made["token"])
            data = base64.b64encode(marker).decode()
            await operator.request("POST", "/v1/secrets", json_body={"name": SECRET, "data": data})
            await operator.request(
                "POST",
                "/v1/services",
                json_body={
                    "name": "reader",
                    "image": "process",
                    "command": ["sh", "-c", READER],
                    "secrets": [{"source": SECRET}],
                    "constraints": [f"node.hostname=={runner}"],
                },
            )
            await _wait_for_hash(admin, hashlib.sha256(marker).hexdigest())
            for i in range(5):
                await cluster.api.set_labels(follower, runner, {f"wire.k{i}": marker.hex()})
                assert (await cluster.api.labels(follower, runner))[f"wire.k{i}"]
            await cluster.final_state([f"{runner}/wire.k{i}" for i in range(5)])
            join = JoinToken.parse(cluster.token)
            return {
                "API token": cluster.api_token.encode(),
                "scoped token": made["token"].encode(),
                "join token": cluster.token.encode(),
                "join secret": str(join).rsplit("-", 1)[1].encode(),
                "join secret (raw)": join.secret,
                "secret value": marker,
                "secret value (base64)": data.encode(),
            }
        except BaseException:
            print(cluster.log_tails())
            raise


async def _wait_for_hash(client: ShoalClient, digest: str) -> None:
    async def printed() -> bool:
        tasks = await client.request("GET", "/v1/tasks", params={"service": "reader"})
        running = [t for t in tasks if t["state"] == "running"]
        if not running:
            return False
        lines = client.stream_lines(f"/v1/tasks/{running[0]['id']}/logs")
        return digest in [line async for line in lines]

    await wait_for(printed, timeout=45, what="the task to print its secret's hash")


def _send_split_marker(bed) -> bytes:
    """A marker one host sends the test process in clear, in two TCP segments."""
    control = f"CLEAR-CONTROL-{secrets.token_hex(8)}".encode()
    with socket.create_server((bed.gateway, 0)) as server:
        port = server.getsockname()[1]
        sender = bed.hosts[0]
        argv = [sys.executable, "-c", SPLIT_SENDER, bed.gateway, str(port), control.decode()]
        sender.run(argv, timeout=10)
        connection, _ = server.accept()
        with connection:
            received = b""
            while chunk := connection.recv(1024):
                received += chunk
    assert received == control
    return control
