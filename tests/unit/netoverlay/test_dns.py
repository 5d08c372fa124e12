"""The embedded DNS server, queried over real UDP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from netoverlay.dns import DnsServer, MalformedQuery, ServiceRecord, answer, service_records
from netoverlay.lb.types import Backend, ServicePort

NODES = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
ENDPOINTS = {
    "web": [
        Backend("web", "t1", "n1", "10.1.0.1", 8080, weight=2),
        Backend("web", "t2", "n2", "10.1.0.2", 8081),
    ],
    "db": [Backend("db", "t3", "n3", "10.1.0.3", 5432), Backend("db", "t4", "n3", "fd00::4", 5432)],
}
PORTS = [ServicePort("web", 80, 8080)]
TABLE = service_records(PORTS, ENDPOINTS, NODES)


@pytest.fixture
async def server():
    dns = DnsServer(TABLE.get)
    address = await dns.start("127.0.0.1", 0)
    yield dns, address
    dns.stop()


async def ask(address, name: str, qtype: str = "A", *, edns: bool = False) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    if edns:
        query.add_ar(EDNS0(udp_len=4096))
    reply = await asyncio.to_thread(query.send, address[0], address[1], timeout=5)
    return DNSRecord.parse(reply)


def rdata(reply: DNSRecord, qtype: int) -> set[str]:
    return {str(rr.rdata) for rr in reply.rr if rr.rtype == qtype}


async def test_a_published_service_resolves_to_the_mesh_addresses(server):
    _, address = server
    reply = await ask(address, "web.shoal")
    assert reply.header.rcode == RCODE.NOERROR and rdata(reply, QTYPE.A) == set(NODES)


async def test_an_unpublished_service_resolves_to_its_tasks(server):
    _, address = server
    assert rdata(await ask(address, "db.shoal"), QTYPE.A) == {"10.1.0.3"}
    assert rdata(await ask(address, "db.shoal", "AAAA"), QTYPE.AAAA) == {"fd00::4"}


async def test_tasks_name_lists_every_task(server):
    _, address = server
    reply = await ask(address, "tasks.WEB.shoal")  # names are case-insensitive
    assert rdata(reply, QTYPE.A) == {"10.1.0.1", "10.1.0.2"}


async def test_srv_records_carry_ports_weights_and_addresses(server):
    _, address = server
    reply = await ask(address, "tasks.web.shoal", "SRV")
    srv = {(str(rr.rdata.target), rr.rdata.port, rr.rdata.weight) for rr in reply.rr}
    assert srv == {("t1.tasks.web.shoal.", 8080, 2), ("t2.tasks.web.shoal.", 8081, 1)}
    extra = {(str(rr.rname), str(rr.rdata)) for rr in reply.ar}
    assert extra == {("t1.tasks.web.shoal.", "10.1.0.1"), ("t2.tasks.web.shoal.", "10.1.0.2")}
    single = await ask(address, "t2.tasks.web.shoal")
    assert rdata(single, QTYPE.A) == {"10.1.0.2"}


async def test_unknown_names_are_nxdomain_and_other_zones_refused(server):
    dns, address = server
    assert (await ask(address, "nope.shoal")).header.rcode == RCODE.NXDOMAIN
    assert (await ask(address, "tasks.nope.shoal")).header.rcode == RCODE.NXDOMAIN
    assert (await ask(address, "t9.tasks.web.shoal")).header.rcode == RCODE.NXDOMAIN
    assert (await ask(address, "example.com")).header.rcode == RCODE.REFUSED
    assert dns.answered == 4


async def test_garbage_is_counted_and_ignored_and_the_server_keeps_answering(server):
    dns, address = server
    response = DNSRecord.question("web.shoal").reply().pack()  # a response is not a query
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for junk in (b"", b"\x00", b"\xff" * 40, response):
            sock.sendto(junk, address)
    reply = await ask(address, "web.shoal")
    assert rdata(reply, QTYPE.A) == set(NODES)
    assert dns.malformed == 4


def test_a_large_answer_is_cut_to_fit_one_datagram():
    many = [
        Backend("big", f"task{i:03d}", "n", f"10.2.{i // 250}.{i % 250 + 1}", 80)
        for i in range(400)
    ]
    table = service_records([], {"big": many}, NODES)
    plain = DNSRecord.parse(answer(DNSRecord.question("tasks.big.shoal").pack(), table.get))
    query = DNSRecord.question("tasks.big.shoal")
    query.add_ar(EDNS0(udp_len=4096))
    large = DNSRecord.parse(answer(query.pack(), table.get))
    assert 0 < len(plain.rr) < len(large.rr) < 400
    assert len(plain.pack()) <= 512 and len(large.pack()) <= 4096


def test_answers_rotate_with_the_query_id():
    firsts = set()
    for query_id in range(6):
        query = DNSRecord.question("web.shoal")
        query.header.id = query_id
        firsts.add(str(DNSRecord.parse(answer(query.pack(), TABLE.get)).rr[0].rdata))
    assert firsts == set(NODES)


def test_records_follow_the_table():
    assert TABLE["web"] == ServiceRecord(tuple(NODES), tuple(ENDPOINTS["web"]))
    assert TABLE["db"].addresses == ("10.1.0.3", "fd00::4")


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_answerer(packet):
    with contextlib.suppress(MalformedQuery):
        DNSRecord.parse(answer(packet, TABLE.get))
