"""A service port published with `proxy_protocol` gets, through the routing mesh of a real
node, a PROXY protocol v2 header naming the client's own address and port first."""

from __future__ import annotations

import asyncio
import shutil
import sys

import pytest

from node.devcluster.localcluster import LocalCluster, wait_for
from tests.integration.mesh_support import create, remove_leftover_tasks
from tests.support import unavailable

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


# haproxy as the task: it takes the client's address from the PROXY v2 header (accept-proxy)
# and answers each request with it.
HAPROXY_TASK = """\
cat > haproxy.cfg <<END
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend behind_the_mesh
    bind :$PORT accept-proxy
    http-request return status 200 content-type text/plain lf-string "%[src] %[src_port]"
END
exec haproxy -db -f haproxy.cfg
"""


async def test_haproxy_as_the_task_reads_the_clients_address_from_a_v2_header(tmp_path):
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if haproxy is None:
        unavailable("haproxy is not installed")
    cluster = LocalCluster(str(tmp_path), 1, ["--runtime", "process", "--lb-dataplane", "proxy"])
    try:
        await cluster.start()
        address = cluster.nodes[0].address
        await create(
            cluster,
            {
                "name": "hap",
                "image": "process",
                "command": [
                    "/bin/sh",
                    "-c",
                    HAPROXY_TASK.replace("exec haproxy", f"exec {haproxy}"),
                ],
                "ports": [{"target": 8000, "published": PUBLISHED + 1, "proxy_protocol": "v2"}],
            },
        )

        async def get() -> tuple[bytes, tuple[str, int]]:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address, PUBLISHED + 1), 5
            )
            mine = writer.get_extra_info("sockname")[:2]
            writer.write(b"GET / HTTP/1.1\r\nHost: hap\r\nConnection: close\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return answer, mine

        async def answered() -> bool:
            try:
                return (await get())[0].startswith(b"HTTP/1.1 200")
            except (TimeoutError, OSError):
                return False

        await wait_for(answered, 60, "haproxy to answer through the mesh")
        answer, (host, port) = await get()
        assert answer.endswith(f"\r\n\r\n{host} {port}".encode()), answer
    finally:
        cluster.stop()
        await remove_leftover_tasks(cluster)
        print(cluster.logs())
