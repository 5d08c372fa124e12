"""The proxy data plane's UDP ports over real sockets, on the stock event loop and uvloop:
each client keeps its endpoint, clients spread over endpoints, idle flows end."""

from __future__ import annotations

import asyncio
import socket

from netoverlay.lb.proxy import ProxyConfig, ProxyDataPlane
from netoverlay.lb.types import Backend, ServicePort
from tests.integration.test_lb_proxy import LISTEN, run  # noqa: F401  (the loop fixture)


class _Echo(asyncio.DatagramProtocol):
    """Answers each datagram with its own name and the datagram."""

    def __init__(self, name: bytes) -> None:
        self.name = name

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(self.name + b" " + data, addr)


async def _backends(count: int) -> tuple[list[Backend], list[asyncio.BaseTransport]]:
    loop = asyncio.get_running_loop()
    backends, transports = [], []
    for i in range(count):
        transport, _ = await loop.create_datagram_endpoint(
            lambda i=i: _Echo(f"b{i}".encode()), local_addr=("127.0.0.2", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        backends.append(Backend("dns", f"t{i}", "n1", "127.0.0.2", port, protocol="udp"))
        transports.append(transport)
    return backends, transports


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LISTEN, 0))
        return s.getsockname()[1]


def _ask(client: socket.socket, published: int, payload: bytes) -> bytes:
    client.sendto(payload, (LISTEN, published))
    return client.recv(2048)


def test_udp_flows_keep_their_endpoint_spread_and_expire(run):  # noqa: F811
    async def scenario() -> None:
        backends, transports = await _backends(2)
        published = _free_udp_port()
        plane = ProxyDataPlane(ProxyConfig(host=LISTEN, seed=1, udp_idle_timeout=0.3))
        await plane.sync([ServicePort("dns", published, 53, "udp")], {"dns": backends})
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
        try:
            for c in clients:
                c.settimeout(2)
            chosen = []
            for c in clients:
                answers = {
                    (await asyncio.to_thread(_ask, c, published, f"q{i}".encode())).split()[0]
                    for i in range(3)
                }
                assert len(answers) == 1, "a client's datagrams all go to one endpoint"
                chosen.append(answers.pop())
            # Least active flows over two choices: 8 flows on 2 endpoints split evenly.
            assert sorted(chosen) == [b"b0"] * 4 + [b"b1"] * 4
            listener = plane._datagrams[published]
            assert listener.counters.connections_active == 8
            await asyncio.sleep(1.0)  # idle past the timeout: every flow ends
            assert listener.counters.connections_active == 0
            assert listener.picker.active(backends[0].key) == 0
            # A client that comes back after expiry gets a new flow and an answer.
            assert await asyncio.to_thread(_ask, clients[0], published, b"again")
        finally:
            for c in clients:
                c.close()
            await plane.stop()
            for t in transports:
                t.close()

    run(scenario())
