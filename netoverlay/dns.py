"""The embedded DNS server: `NAME.shoal` and `tasks.NAME.shoal` from the endpoint table.

    NAME.shoal                  A/AAAA: where the service is reachable (every node's published
                                address for ingress ports, else its tasks' addresses)
    tasks.NAME.shoal            A/AAAA: each healthy task; SRV: each task's port and weight,
                                naming TASK.tasks.NAME.shoal, whose address rides along
    TASK.tasks.NAME.shoal       A/AAAA: that task

Unknown names in the zone get NXDOMAIN; names outside it get REFUSED (no forwarding, so the
server never becomes an open resolver). `answer` is pure: bytes and a resolver in, bytes
out; `DnsServer` is the UDP shell around it. Malformed packets are counted and dropped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from dnslib import AAAA, OPCODE, QTYPE, RCODE, RR, SRV, A, DNSError, DNSRecord

from netoverlay.lb.types import Backend, ServicePort

log = logging.getLogger(__name__)

ZONE = "shoal"
# Short: the table changes as tasks come and go, and clients should notice within seconds.
TTL = 2
_PLAIN_UDP_LIMIT = 512
_EDNS_LIMIT = 4096
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    addresses: tuple[str, ...]  # answers for NAME.shoal
    tasks: tuple[Backend, ...]  # answers for tasks.NAME.shoal


# Service name (lower case) to its records, None when there is no such service.
Resolver = Callable[[str], ServiceRecord | None]


def service_records(
    ports: list[ServicePort], endpoints: Mapping[str, list[Backend]], ingress_addresses: list[str]
) -> dict[str, ServiceRecord]:
    """The DNS view of the table. A service with an ingress port resolves to the addresses
    the routing mesh listens on (any node forwards); any other service to its tasks."""
    ingress = {p.service for p in ports if p.mode == "ingress"}
    names = {*endpoints, *(p.service for p in ports)}
    records = {}
    for service in sorted(names):
        tasks = tuple(sorted(endpoints.get(service, ()), key=lambda e: e.key))
        if service in ingress:
            addresses = tuple(dict.fromkeys(ingress_addresses))
        else:
            addresses = tuple(dict.fromkeys(e.address for e in tasks))
        records[service.lower()] = ServiceRecord(addresses, tasks)
    return records


class MalformedQuery(ValueError):
    """The packet is not a DNS query we can answer; it gets no reply."""


def _address_rr(name: str, address: str) -> RR:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return RR(name, QTYPE.A, rdata=A(address), ttl=TTL)
    return RR(name, QTYPE.AAAA, rdata=AAAA(address), ttl=TTL)


def _wants(qtype: int, address: str) -> bool:
    version = ipaddress.ip_address(address).version
    return (
        qtype == QTYPE.ANY
        or (qtype == QTYPE.A and version == 4)
        or (qtype == QTYPE.AAAA and version == 6)
    )


def _rotate(items: tuple[T, ...], by: int) -> tuple[T, ...]:
    """Rotate by the query id, so that clients taking the first answer spread out."""
    if not items:
        return items
    shift = by % len(items)
    return items[shift:] + items[:shift]


def _records(
    labels: list[str], qname: str, qtype: int, query_id: int, resolve: Resolver
) -> list[tuple[RR, list[RR]]] | None:
    """(answer, its additional records) pairs for a name in the zone; None for NXDOMAIN."""
    if len(labels) == 1:
        record = resolve(labels[0])
        if record is None:
            return None
        return [
            (_address_rr(qname, a), [])
            for a in _rotate(record.addresses, query_id)
            if _wants(qtype, a)
        ]
    if len(labels) == 2 and labels[0] == "tasks":
        record = resolve(labels[1])
        if record is None:
            return None
        tasks = _rotate(record.tasks, query_id)
        if qtype == QTYPE.SRV:
            answers = []
            for task in tasks:
                target = f"{task.task_id}.{qname}"
                srv = RR(
                    qname,
                    QTYPE.SRV,
                    ttl=TTL,
                    rdata=SRV(priority=0, weight=task.weight, port=task.port, target=target),
                )
                answers.append((srv, [_address_rr(target, task.address)]))
            return answers
        addresses = dict.fromkeys(t.address for t in tasks)
        return [(_address_rr(qname, a), []) for a in addresses if _wants(qtype, a)]
    if len(labels) == 3 and labels[1] == "tasks":
        record = resolve(labels[2])
        matches = [t for t in (record.tasks if record else ()) if t.task_id.lower() == labels[0]]
        if not matches:
            return None
        return [(_address_rr(qname, t.address), []) for t in matches if _wants(qtype, t.address)]
    return None


def _size_limit(query: DNSRecord) -> int:
    for extra in query.ar:
        if extra.rtype == QTYPE.OPT:  # EDNS0: the requester's UDP payload size is the class
            requested: int = extra.rclass
            return max(_PLAIN_UDP_LIMIT, min(requested, _EDNS_LIMIT))
    return _PLAIN_UDP_LIMIT


def parse_query(packet: bytes) -> DNSRecord:
    """One DNS query from a packet. Raises MalformedQuery for anything that is not one."""
    try:
        query = DNSRecord.parse(packet)
    except (DNSError, ValueError, IndexError, UnicodeError) as exc:
        raise MalformedQuery(f"unparseable: {exc}") from None
    if query.header.qr:
        raise MalformedQuery("qr: a response, not a query")
    return query


def answer(packet: bytes, resolve: Resolver, zone: str = ZONE) -> bytes:
    """The reply to one query packet. Raises MalformedQuery for anything that is not one."""
    query = parse_query(packet)
    reply = query.reply(ra=0)
    if query.header.opcode != OPCODE.QUERY:
        reply.header.rcode = RCODE.NOTIMP
        return bytes(reply.pack())
    if len(query.questions) != 1:
        reply.header.rcode = RCODE.FORMERR
        return bytes(reply.pack())
    question = query.questions[0]
    labels = [label.decode("ascii", "replace").lower() for label in question.qname.label]
    if not labels or labels[-1] != zone:
        reply.header.rcode = RCODE.REFUSED
        reply.header.aa = 0
        return bytes(reply.pack())
    found = _records(labels[:-1], str(question.qname), question.qtype, query.header.id, resolve)
    if found is None:
        reply.header.rcode = RCODE.NXDOMAIN
        return bytes(reply.pack())
    return _fit(reply, found, _size_limit(query))


def _fit(reply: DNSRecord, found: list[tuple[RR, list[RR]]], limit: int) -> bytes:
    """Pack as many answers as fit in one datagram. There is no TCP fallback, so rather than
    a truncated (TC) reply the client gets a complete subset, rotated per query."""

    def pack(count: int) -> bytes:
        reply.rr = [rr for rr, _ in found[:count]]
        reply.ar = [extra for _, extras in found[:count] for extra in extras]
        return bytes(reply.pack())

    packed = pack(len(found))
    if len(packed) <= limit:
        return packed
    fits, too_many = 0, len(found)  # binary search: pack(fits) fits, pack(too_many) does not
    while too_many - fits > 1:
        middle = (fits + too_many) // 2
        if len(pack(middle)) <= limit:
            fits = middle
        else:
            too_many = middle
    return pack(fits)


class DnsServer(asyncio.DatagramProtocol):
    """Answers queries on a UDP socket. `await start(host, port)`, `stop()`."""

    def __init__(self, resolve: Resolver, zone: str = ZONE) -> None:
        self.resolve = resolve
        self.zone = zone
        self.answered = 0
        self.malformed = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind and serve; returns the bound address (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(host, port)
        )
        host, port, *_ = self._transport.get_extra_info("sockname")
        return host, port

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = answer(data, self.resolve, self.zone)
        except MalformedQuery as exc:
            self.malformed += 1
            log.debug("dropped a malformed DNS packet from %s: %s", addr, exc)
            return
        self.answered += 1
        if self._transport is not None:  # always: datagrams arrive once it is bound
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier reply (the client went away); nothing to do.
        log.debug("DNS socket error: %s", exc)

    def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
