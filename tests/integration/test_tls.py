"""Transport security between real node processes: TLS on every TCP API connection, mutual
TLS between nodes with certificates from the cluster's CA, the CA pinned by the join token,
rotation of the join token, renewal of certificates, and nothing secret on the wire."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import subprocess
import time

import aiohttp
import pytest

from node.client import ApiError, ShoalClient
from node.config import load
from node.devcluster.localcluster import NodeProc, started_cluster, wait_for
from node.pki.authority import (
    create_authority,
    fingerprint,
    issued_by,
    make_csr,
    new_key_pem,
    sign_node,
    split_bundle,
)
from node.pki.contexts import client_context
from node.security import JoinToken
from tests.integration.cluster_support import must, shoal

pytestmark = pytest.mark.timeout(150)


class RecordingProxy:
    """A TCP proxy that keeps every byte it carries, both ways, and counts connections."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.seen, self.connections = target, bytearray(), 0
        self.server: asyncio.AbstractServer

    async def start(self, host: str) -> str:
        self.server = await asyncio.start_server(self._serve, host, 0)
        return f"{host}:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pump(src, dst) -> None:
            try:
                while data := await src.read(65536):
                    self.seen += data
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def close(self) -> None:
        self.server.close()


def served_certificate(node: NodeProc) -> bytes:
    host, port = node.api.split(":")
    with (
        ssl.create_connection((host, int(port))) as raw,
        node.ssl_context().wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.version() == "TLSv1.3"
        return tls.getpeercert(binary_form=True)


def served_chain_root(node: NodeProc) -> bytes:
    """The root CA that signed the certificate the node serves (from its trusted roots)."""
    leaf = ssl.DER_cert_to_PEM_cert(served_certificate(node)).encode()
    with open(node.ca_file, "rb") as f:
        roots = [r.encode() for r in split_bundle(f.read())]
    return next(root for root in roots if issued_by(leaf, root))


async def join(node: NodeProc, target: str, token: str) -> tuple[int, str]:
    """A refused join: its exit code and what it said (the proxy runs in this loop)."""
    proc = await asyncio.create_subprocess_exec(
        *node.command(target, token),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ, SHOAL_QUIET="1"),
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, err.decode()


async def test_tls_everywhere_pinning_rotation_renewal_and_no_secret_in_clear(tmp_path):
    async with started_cluster(
        str(tmp_path), 3, ["--runtime", "process", "--cert-lifetime", "15"]
    ) as cluster:
        first, second, _ = cluster.nodes
        # Every TCP connection to the API is TLS 1.3, certified for the node it reaches.
        before = served_certificate(second)
        # Plain HTTP to the API port gets no answer.
        with pytest.raises(aiohttp.ClientError):
            async with aiohttp.ClientSession() as session:
                await session.get(f"https://{first.api}/healthz")

        # A client certificate the cluster's CA did not sign cannot even connect, and a
        # token without a node certificate does not make a node.
        foreign = create_authority("ffffffffffffffff", time.time())
        key = new_key_pem()
        node_id = (await cluster.get(0, "/v1/nodes"))[0]["id"]
        forged = sign_node(
            foreign,
            make_csr(node_id, key),
            node_id=node_id,
            address=first.address,
            lifetime=60,
            now=time.time(),
        )
        (tmp_path / "forged.pem").write_bytes(forged)
        (tmp_path / "forged-key.pem").write_bytes(key)
        impostor = first.ssl_context()
        impostor.load_cert_chain(tmp_path / "forged.pem", tmp_path / "forged-key.pem")
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{first.url}/v1/internal/removed", ssl=impostor) as r,
            ):
                await r.read()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{first.url}/v1/internal/removed",
                ssl=first.ssl_context(),
                headers={"Authorization": f"Bearer {first.api_token}"},
            ) as r,
        ):
            assert r.status == 403
        assert first.running

        # The join token pins the CA: a token naming another CA is refused by the joiner,
        # which opens one connection (to fetch the CA) and sends nothing after it.
        proxy = RecordingProxy((first.address, first.api_port))
        through = await proxy.start("127.0.0.1")
        secret = JoinToken.parse(cluster.token).secret
        other = str(JoinToken(fingerprint(foreign.cert_pem), secret))
        code, said = await join(NodeProc(5, cluster.block, str(tmp_path)), through, other)
        assert code == 2 and "does not present the cluster CA" in said, said
        assert proxy.connections == 1

        # rotate-token: the old token is refused from then on, the new one works.
        rotated = must(shoal("cluster", "rotate-token", addr=first.api)).strip()
        assert rotated.startswith("SHOAL2-") and rotated != cluster.token
        code, said = await join(NodeProc(6, cluster.block, str(tmp_path)), first.api, cluster.token)
        assert code == 1 and "wrong or rotated join token" in said, said

        # A join, a secret and CLI calls with the API token through the recording proxy:
        # none of the token, the secret's content or the cluster secret crosses in clear.
        joiner = NodeProc(4, cluster.block, str(tmp_path), ["--runtime", "process"])
        joiner.start(join=through, token=rotated)
        cluster.nodes.append(joiner)
        await wait_for(lambda: _ready(cluster, "n4"), 45, "n4 ready")
        content = b"hunter2-very-secret-content"
        with open(first.ca_file, "rb") as ca:
            # Reached through the proxy's address, which the node's certificate does not name.
            by_chain = client_context(ca.read(), check_hostname=False)
        async with ShoalClient(through, first.api_token, ssl_context=by_chain) as client:
            await client.post(
                "/v1/secrets", {"name": "dbpw", "data": base64.b64encode(content).decode()}
            )
            assert len(await client.get("/v1/nodes")) == 4
        cluster_secret = load(first.data_dir).identity.secret_hex
        wire = bytes(proxy.seen)
        assert len(wire) > 1000
        for clear in (
            first.api_token.encode(),
            content,
            base64.b64encode(content),
            cluster_secret.encode(),
            rotated.encode(),
            b"Authorization",
        ):
            assert clear not in wire
        proxy.close()

        # Certificates renew by themselves (here a 15 s lifetime) and the cluster goes on.
        async def renewed() -> bool:
            return served_certificate(second) != before

        await wait_for(renewed, 30, "n2's certificate renewed")
        async with second.client() as client:
            await client.post("/v1/secrets", {"name": "after-renewal", "data": "eA=="})
        # Raft's new connections use the renewed certificate, without a restart of n2.
        await raft_reconnects(cluster, 2, "after-renewal-raft")

        # rotate-ca: a new root; every node moves to a certificate of it, while a client that
        # still trusts only the old root verifies them (the new root is cross-signed).
        with open(first.ca_file, "rb") as f:
            old_root = f.read()
        token = must(shoal("cluster", "rotate-ca", addr=first.api)).strip()
        new_digest = JoinToken.parse(token).ca_digest
        assert new_digest != JoinToken.parse(rotated).ca_digest

        async def all_moved() -> bool:
            for node in cluster.nodes:
                with open(node.ca_file, "rb") as f:
                    if fingerprint(f.read()) != new_digest:
                        return False
            return all(fingerprint(served_chain_root(n)) == new_digest for n in cluster.nodes)

        await wait_for(all_moved, 30, "every node on a certificate of the new root")
        async with ShoalClient(
            second.api, second.api_token, ssl_context=client_context(old_root)
        ) as client:
            await client.post("/v1/secrets", {"name": "after-rotation", "data": "eA=="})
        # Raft connects over certificates of the new root, trusted beside the old one.
        await raft_reconnects(cluster, 2, "after-rotation-raft")


async def raft_reconnects(cluster, i: int, label: str) -> None:
    """Restart voter i: every Raft connection it has is new (handshakes with the others'
    current certificates, both ways), and a write through it commits."""
    node = cluster.nodes[i]
    node.stop()
    node.start()

    async def connected() -> bool:
        with contextlib.suppress(aiohttp.ClientError, OSError, ApiError):
            mine = (await cluster.get(i, "/v1/cluster"))["this_node"]
            both = len(mine["connected_partners"]) == len(mine["raft_partners"]) == 2
            return both and mine["caught_up"]
        return False

    await wait_for(connected, 30, f"{node.name}'s Raft connected to both voters again")
    async with node.client() as client:
        await client.post("/v1/secrets", {"name": label, "data": "eA=="})


async def _ready(cluster, name: str) -> bool:
    nodes = await cluster.get(0, "/v1/nodes")
    return any(n["name"] == name and n["status"] == "ready" for n in nodes)
