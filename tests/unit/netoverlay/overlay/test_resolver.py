"""Container DNS on an overlay network: NAME, NAME.NETWORK, aliases and tasks.NAME answered
from the network's own services only; other names forwarded to the upstream resolver and
its answer relayed (a real UDP resolver on loopback stands in for the upstream)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from netoverlay.overlay.resolver import Forward, NetworkResolver, decide, lookup, upstreams_from
from netoverlay.overlay.types import OverlayNetwork, ServiceOnNetwork

NET = OverlayNetwork(
    "appnet",
    4096,
    "10.200.0.0/20",
    "10.200.0.0/21",
    "10.200.0.0/26",
    "10.200.0.1",
    services=(
        ServiceOnNetwork("backend", "10.200.8.1", ("api",), ("10.200.0.66", "10.200.0.2")),
        ServiceOnNetwork("novip", "", (), ("10.200.0.5",)),
    ),
)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("backend", ("10.200.8.1",)),
        ("BACKEND.appnet", ("10.200.8.1",)),
        ("api", ("10.200.8.1",)),
        ("api.appnet", ("10.200.8.1",)),
        ("tasks.backend", ("10.200.0.2", "10.200.0.66")),
        ("tasks.backend.appnet", ("10.200.0.2", "10.200.0.66")),
        ("novip", ("10.200.0.5",)),
        ("missing.appnet", None),
        ("tasks.missing.appnet", None),
        ("missing", Forward()),
        ("example.com", Forward()),
        ("backend.othernet", Forward()),
    ],
)
def test_lookup(name, expected):
    assert lookup(NET, name.split(".")) == expected


def answers(reply: bytes) -> list[str]:
    return [str(rr.rdata) for rr in DNSRecord.parse(reply).rr]


def test_decide_answers_a_queries_and_nxdomain_in_the_network_zone():
    assert answers(decide(DNSRecord.question("backend").pack(), NET)) == ["10.200.8.1"]
    reply = DNSRecord.parse(decide(DNSRecord.question("nope.appnet").pack(), NET))
    assert reply.header.rcode == RCODE.NXDOMAIN
    aaaa = DNSRecord.parse(decide(DNSRecord.question("backend", "AAAA").pack(), NET))
    assert (aaaa.header.rcode, aaaa.rr) == (RCODE.NOERROR, []), (
        "IPv4 only: no AAAA, but the name exists"
    )
    assert isinstance(decide(DNSRecord.question("example.com").pack(), NET), Forward)


def test_upstreams_are_read_from_resolv_conf():
    text = "# generated\nsearch lan\nnameserver 10.1.0.254\nnameserver 9.9.9.9\noptions ndots:1\n"
    assert upstreams_from(text) == ("10.1.0.254", "9.9.9.9")


class Upstream(asyncio.DatagramProtocol):
    """A resolver that knows one outside name."""

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        query = DNSRecord.parse(data)
        reply = query.reply()
        if str(query.q.qname) == "outside.example.":
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("192.0.2.7"), ttl=60))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        self.transport.sendto(reply.pack(), addr)


async def ask(port: int, name: str) -> DNSRecord:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, DNSRecord.question(name).pack())
        return DNSRecord.parse(await asyncio.wait_for(loop.sock_recv(sock, 4096), 5))
    finally:
        sock.close()


async def test_the_server_answers_its_names_and_forwards_the_rest():
    loop = asyncio.get_running_loop()
    upstream, _ = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
    upstream_port = upstream.get_extra_info("sockname")[1]
    resolver = NetworkResolver(NET, ["127.0.0.1"], upstream_port=upstream_port)
    _, port = await resolver.start("127.0.0.1", 0)
    try:
        assert [str(r.rdata) for r in (await ask(port, "backend")).rr] == ["10.200.8.1"]
        forwarded = await ask(port, "outside.example")
        assert [str(r.rdata) for r in forwarded.rr] == ["192.0.2.7"]
        assert (await ask(port, "nowhere.example")).header.rcode == RCODE.NXDOMAIN
        assert (resolver.answered, resolver.forwarded) == (1, 2)
    finally:
        resolver.stop()
        upstream.close()


async def test_without_an_upstream_answering_the_client_gets_servfail():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # takes the queries and never answers
    resolver = NetworkResolver(
        NET, ["127.0.0.1"], upstream_port=silent.getsockname()[1], forward_timeout=0.2
    )
    resolver_port = (await resolver.start("127.0.0.1", 0))[1]
    try:
        assert (await ask(resolver_port, "outside.example")).header.rcode == RCODE.SERVFAIL
    finally:
        resolver.stop()
        silent.close()
