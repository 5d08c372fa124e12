"""The PROXY protocol headers the proxy data plane writes, read by a real backend: haproxy
with `accept-proxy` answers each HTTP request with the client address it took from the
header, for version 1 and version 2."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time

import pytest

from netoverlay.lb.proxy import ProxyConfig, ProxyDataPlane
from netoverlay.lb.types import Backend, ServicePort
from tests.support import unavailable

pytestmark = pytest.mark.timeout(60)

LISTEN = "127.0.0.1"
BACKEND = "127.0.0.31"
CLIENT = "127.0.0.77"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def haproxy(tmp_path):
    """haproxy listening on BACKEND, answering `<source> <source port>` as the PROXY header
    says; yields its port."""
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if binary is None:
        unavailable("haproxy is not installed")
    port = free_port(BACKEND)
    config = tmp_path / "haproxy.cfg"
    config.write_text(f"""
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend behind_the_mesh
    bind {BACKEND}:{port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "%[src] %[src_port]"
""")
    process = subprocess.Popen([binary, "-db", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((BACKEND, port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"haproxy did not start: {process.stderr.read()!r}"
                    ) from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(5)


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_haproxy_behind_the_proxy_sees_the_clients_address(haproxy, version):
    published = free_port(LISTEN)
    plane = ProxyDataPlane(ProxyConfig(host=LISTEN))
    await plane.sync(
        [ServicePort("web", published, 80, proxy_protocol=version)],
        {"web": [Backend("web", "t1", "n1", BACKEND, haproxy)]},
    )
    try:
        reader, writer = await asyncio.open_connection(LISTEN, published, local_addr=(CLIENT, 0))
        client_port = writer.get_extra_info("sockname")[1]
        writer.write(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        await plane.stop()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer
    assert body.decode() == f"{CLIENT} {client_port}"
