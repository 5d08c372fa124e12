"""The nftables data plane with real DNAT: connections made on this host to the published
address reach backends on other loopback addresses. Needs root and a working `nft`."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections import Counter

import pytest

from netoverlay.lb.dataplane import SplitDataPlane, nft_problem, open_dataplane
from netoverlay.lb.nft import NftConfig, NftDataPlane
from netoverlay.lb.types import Backend, ServicePort
from tests.support import unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

PUBLISH = "127.0.0.1"


@pytest.fixture
async def nft_config():
    config = NftConfig(host=PUBLISH, table=f"shoal_test_{id(object()) % 100000}")
    problem = await nft_problem(config)
    if problem:
        unavailable(problem)
    yield config
    # Whatever a test did, leave no table behind.
    subprocess.run(["nft", "delete", "table", "ip", config.table], capture_output=True)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class NamedBackend:
    """Answers each connection with its name, then echoes lines until EOF."""

    def __init__(self, name: str, address: str) -> None:
        self.name, self.address = name, address

    async def start(self) -> NamedBackend:
        self.server = await asyncio.start_server(self._serve, self.address, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader, writer) -> None:
        writer.write(self.name.encode() + b"\n")
        while line := await reader.readline():
            writer.write(line)
        writer.close()

    def endpoint(self) -> Backend:
        return Backend("web", f"task-{self.name}", "n1", self.address, self.port)


async def greet(port: int):
    reader, writer = await asyncio.open_connection(PUBLISH, port)
    return (await reader.readline()).decode().strip(), reader, writer


async def test_dnat_spreads_connections_and_swaps_backends_without_cutting(nft_config):
    a = await NamedBackend("a", "127.0.0.30").start()
    b = await NamedBackend("b", "127.0.0.31").start()
    c = await NamedBackend("c", "127.0.0.32").start()
    port = free_port(PUBLISH)
    plane = NftDataPlane(nft_config)
    service = [ServicePort("web", port, 80)]
    await plane.sync(service, {"web": [a.endpoint(), b.endpoint()]})
    seen = Counter()
    for _ in range(40):
        name, _, writer = await greet(port)
        seen[name] += 1
        writer.close()
    assert set(seen) == {"a", "b"}

    name, reader, writer = await greet(port)
    await plane.sync(service, {"web": [c.endpoint()]})
    writer.write(b"still here\n")
    assert await reader.readline() == b"still here\n"  # conntrack keeps the old translation
    later = [(await greet(port)) for _ in range(5)]
    assert {n for n, _, _ in later} == {"c"}
    for _, _, w in [*later, (name, reader, writer)]:
        w.close()

    await plane.stop()
    listing = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert nft_config.table not in listing
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(PUBLISH, port)


async def test_auto_mode_uses_nft_and_keeps_proxy_protocol_ports_on_the_proxy(nft_config):
    a = await NamedBackend("a", "127.0.0.33").start()
    plain, with_header = free_port(PUBLISH), free_port(PUBLISH)
    plane = await open_dataplane("auto", PUBLISH, table=nft_config.table)
    assert isinstance(plane, SplitDataPlane)
    ports = [
        ServicePort("web", plain, 80),
        ServicePort("web", with_header, 81, proxy_protocol="v2"),
    ]
    await plane.sync(ports, {"web": [a.endpoint()]})
    rules = subprocess.run(
        ["nft", "list", "table", "ip", nft_config.table], capture_output=True, text=True
    ).stdout
    assert f"dport {plain} " in rules and f"dport {with_header} " not in rules
    name, _, writer = await greet(plain)
    writer.close()
    assert name == "a"
    name, reader, writer = await greet(with_header)
    # The backend echoes what it got: the proxy's PROXY v2 header came first.
    assert name == "a" and await reader.readexactly(12) == b"\r\n\r\n\x00\r\nQUIT\n"
    writer.close()
    await plane.stop()
