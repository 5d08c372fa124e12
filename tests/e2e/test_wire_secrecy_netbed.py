"""Nothing secret crosses the network in clear: three Shoal nodes (process runtime) on three
hosts of the test bed, while every frame on the bed's bridge is captured from before the
first node starts.

The nodes join with the join token; an admin makes a scoped token, which creates a secret
through a follower; a service on another node mounts it and prints its hash; labels are
written and read through a follower (forwarded to the leader) and Raft replicates them to
every node. The capture holds traffic on the API, Raft and gossip ports between the hosts,
and a marker sent in clear, split over two TCP segments, is found in it (the search works);
the API token, the scoped token, the join token's secret and the secret's value (plain or
base64) are in no frame and no reassembled stream."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
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
