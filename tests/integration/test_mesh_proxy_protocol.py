"""A service port published with `proxy_protocol` gets, through the routing mesh of a real
node, a PROXY protocol v2 header naming the client's own address and port first."""

from __future__ import annotations

import asyncio
import sys

import pytest

from node.devcluster.localcluster import LocalCluster, wait_for
from tests.integration.mesh_support import create, remove_leftover_tasks

pytestmark = pytest.mark.timeout(120)

PUBLISHED = 18090
# Answers each connection with the source its PROXY header names, or `plain` without one.
SERVER = """\
import ipaddress, os, socket, struct
server = socket.create_server(("", int(os.environ["PORT"])))
while True:
    conn, _ = server.accept()
    with conn:
        head = conn.recv(16, socket.MSG_WAITALL)
        if head[:12] != b"\\r\\n\\r\\n\\x00\\r\\nQUIT\\n":
            conn.sendall(b"plain\\n")
            continue
        body = conn.recv(struct.unpack("!H", head[14:16])[0], socket.MSG_WAITALL)
        source, port = ipaddress.ip_address(body[:4]), struct.unpack("!H", body[8:10])[0]
        conn.sendall(f"proxy {source} {port}\\n".encode())
"""


async def ask(address: str) -> tuple[str, tuple[str, int]]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, PUBLISHED), 5)
    try:
        mine = writer.get_extra_info("sockname")[:2]
        writer.write(b"x" * 16)  # what a client without a header would send first
        return (await asyncio.wait_for(reader.readline(), 5)).decode().strip(), mine
    finally:
        writer.close()


async def test_the_task_sees_the_clients_address_in_a_proxy_header(tmp_path):
    cluster = LocalCluster(str(tmp_path), 1, ["--runtime", "process", "--lb-dataplane", "proxy"])
    try:
        await cluster.start()
        address = cluster.nodes[0].address
        await create(
            cluster,
            {
                "name": "pp",
                "image": "process",
                "command": [sys.executable, "-c", SERVER],
                "ports": [{"target": 8000, "published": PUBLISHED, "proxy_protocol": True}],
            },
        )

        async def answered() -> bool:
            try:
                return (await ask(address))[0].startswith("proxy ")
            except (TimeoutError, OSError):
                return False

        await wait_for(answered, 60, "the task to answer through the mesh")
        answer, (host, port) = await ask(address)
        assert answer == f"proxy {host} {port}"
    finally:
        cluster.stop()
        await remove_leftover_tasks(cluster)
        print(cluster.logs())
