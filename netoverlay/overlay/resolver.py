"""DNS for the tasks of the overlay networks, served on this node's address in each network.
A task on several networks asks the resolver of one of them and gets the names of all of
them: the resolver learns which networks the asking task is on from its source address
(`Memberships`: which of this node's containers holds it).

    NAME, NAME.NETWORK, ALIAS, ALIAS.NETWORK    A: the service's VIP (its tasks' addresses
                                                when it has no VIP)
    tasks.NAME, tasks.NAME.NETWORK              A: each healthy task's address on the network

A bare name is looked up in the network the query came in on first, then in the task's
other networks by name. Services of networks the task is not on are not answered (networks
are isolated, names too). Another name under one of the task's networks is NXDOMAIN; every
other name is forwarded to the node's upstream resolvers and their answer relayed, so a task
resolves the outside world too. `decide` is pure (bytes in, an answer or "forward" out);
`NetworkResolver` is the UDP shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from dnslib import OPCODE, QTYPE, RCODE, RR, A, DNSError, DNSRecord

from netoverlay.dns import MalformedQuery, parse_query
from netoverlay.overlay.types import OverlayNetwork, ServiceOnNetwork

log = logging.getLogger(__name__)

TTL = 2
# Queries in flight per network (forwarded, or waiting to learn who asks); past this a query
# gets SERVFAIL at once rather than memory and sockets without bound.
MAX_FORWARDS = 128
FORWARD_TIMEOUT = 2.0
_MAX_PACKET = 4096


@dataclass(frozen=True, slots=True)
class Forward:
    """The query is for a name outside the cluster: ask the upstream resolvers."""


Decision: TypeAlias = bytes | Forward


@functools.lru_cache(maxsize=64)
def _names(network: OverlayNetwork) -> dict[str, ServiceOnNetwork]:
    """Every name the network answers, worked out once per version of the network."""
    found: dict[str, ServiceOnNetwork] = {}
    for service in sorted(network.services, key=lambda s: s.name):
        for name in (service.name, *service.aliases):
            found.setdefault(name.lower(), service)
    return found


def _lookup_in(network: OverlayNetwork, labels: Sequence[str]) -> tuple[str, ...] | None:
    """The addresses `labels` (lowercase, without the network's name) have on `network`."""
    services = _names(network)
    if len(labels) == 1 and labels[0] in services:
        service = services[labels[0]]
        return (service.vip,) if service.vip else tuple(sorted(set(service.tasks)))
    if len(labels) == 2 and labels[0] == "tasks" and labels[1] in services:
        return tuple(sorted(set(services[labels[1]].tasks)))
    return None


def lookup(
    networks: Sequence[OverlayNetwork], labels: Sequence[str]
) -> tuple[str, ...] | None | Forward:
    """The addresses a name has for a task on `networks` (the one the query came in on
    first); None for NXDOMAIN; Forward when not ours."""
    labels = [label.lower() for label in labels]
    if len(labels) > 1:
        zone = next((n for n in networks if n.name.lower() == labels[-1]), None)
        if zone is not None:
            return _lookup_in(zone, labels[:-1])
    for network in networks:
        found = _lookup_in(network, labels)
        if found is not None:
            return found
    return Forward()


def decide(packet: bytes, networks: Sequence[OverlayNetwork]) -> Decision:
    """The reply to one query of a task on `networks`, or Forward. Raises MalformedQuery
    for anything else."""
    query = parse_query(packet)
    reply = query.reply(ra=1)
    if query.header.opcode != OPCODE.QUERY or len(query.questions) != 1:
        reply.header.rcode = RCODE.NOTIMP if query.header.opcode != OPCODE.QUERY else RCODE.FORMERR
        return bytes(reply.pack())
    question = query.questions[0]
    labels = [label.decode("ascii", "replace") for label in question.qname.label]
    found = lookup(networks, labels)
    if isinstance(found, Forward):
        return found
    if found is None:
        reply.header.rcode = RCODE.NXDOMAIN
        return bytes(reply.pack())
    if question.qtype in (QTYPE.A, QTYPE.ANY):
        # Rotated by the query id, so clients that take the first address spread out.
        shift = query.header.id % len(found) if found else 0
        for address in found[shift:] + found[:shift]:
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=TTL))
    return bytes(reply.pack())


def servfail(packet: bytes) -> bytes | None:
    with contextlib.suppress(DNSError, ValueError, IndexError, UnicodeError):
        reply = DNSRecord.parse(packet).reply(ra=1)
        reply.header.rcode = RCODE.SERVFAIL
        return bytes(reply.pack())
    return None


def upstreams_from(resolv_conf: str) -> tuple[str, ...]:
    """The `nameserver` addresses of a resolv.conf text, in order."""
    found = []
    for line in resolv_conf.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            found.append(parts[1])
    return tuple(found)


class _OneAnswer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def ask_upstream(
    packet: bytes, upstreams: Sequence[str], port: int = 53, timeout: float = FORWARD_TIMEOUT
) -> bytes | None:
    """The first answer of the upstreams, asked in order, each within `timeout`."""
    loop = asyncio.get_running_loop()
    for upstream in upstreams:
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                _OneAnswer, remote_addr=(upstream, port)
            )
        except OSError as exc:  # no route to it from here
            log.debug("DNS upstream %s is unreachable: %s", upstream, exc)
            continue
        try:
            transport.sendto(packet)
            return await asyncio.wait_for(protocol.answer, timeout)
        except (TimeoutError, OSError) as exc:
            log.debug("DNS upstream %s did not answer: %s", upstream, exc)
        finally:
            transport.close()
    return None


@functools.lru_cache(maxsize=64)
def _network_of(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr)


class Memberships(Protocol):
    """Which overlay networks (by name) the task holding `address` on `network` is on."""

    def known(self, network: str, address: str) -> tuple[str, ...] | None:
        """What is known now, without asking anyone; None when the address is not known."""

    async def find(self, network: str, address: str) -> tuple[str, ...]:
        """Found out afresh when unknown; (network,) when no task of this node holds it."""


class NetworkResolver(asyncio.DatagramProtocol):
    """Serves one network's DNS on `address`:`port`. `update(network, networks)` swaps what
    it answers: its own network and every network of this node, which a task asking from its
    address on this one may also be on (`memberships` says which; without it, or for an
    address outside this node's lease, the task gets this network's names only)."""

    def __init__(
        self,
        network: OverlayNetwork,
        upstreams: Sequence[str],
        upstream_port: int = 53,
        forward_timeout: float = FORWARD_TIMEOUT,
        memberships: Memberships | None = None,
    ) -> None:
        self.network = network
        self.networks: Mapping[str, OverlayNetwork] = {network.name: network}
        self.upstreams = tuple(upstreams)
        self.upstream_port = upstream_port
        self.forward_timeout = forward_timeout
        self.memberships = memberships
        self.answered = 0
        self.forwarded = 0
        self.malformed = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self, address: str, port: int = 53) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(address, port)
        )
        host, port, *_ = self._transport.get_extra_info("sockname")
        return host, port

    def update(
        self, network: OverlayNetwork, networks: Mapping[str, OverlayNetwork] | None = None
    ) -> None:
        self.network = network
        self.networks = dict(networks) if networks is not None else {network.name: network}

    def _on(self, names: Sequence[str]) -> tuple[OverlayNetwork, ...]:
        """This network first, then those of `names` this node takes part in."""
        return (
            self.network,
            *(
                self.networks[name]
                for name in sorted(set(names))
                if name != self.network.name and name in self.networks
            ),
        )

    def _local(self, address: str) -> bool:
        """Whether `address` is in this node's lease: only this node's tasks are looked up."""
        try:
            return bool(self.network.lease) and ipaddress.ip_address(address) in _network_of(
                self.network.lease
            )
        except ValueError:
            return False

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > _MAX_PACKET:
            self.malformed += 1
            return
        if self.memberships is None or not self._local(addr[0]):
            self._answer(data, addr, (self.network,))
            return
        names = self.memberships.known(self.network.name, addr[0])
        if names is not None:
            self._answer(data, addr, self._on(names))
        elif len(self._pending) >= MAX_FORWARDS:
            self._send(servfail(data), addr)
        else:  # a task this node has not seen yet (it has just started): ask who it is first
            self._spawn(self._answer_found(data, addr))

    async def _answer_found(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.memberships is not None
        try:
            names: Sequence[str] = await self.memberships.find(self.network.name, addr[0])
        except Exception as exc:  # the engine failed us: answer for this network alone
            log.warning("overlay DNS: cannot tell which networks %s is on: %s", addr[0], exc)
            names = ()
        self._answer(data, addr, self._on(names))

    def _answer(
        self, data: bytes, addr: tuple[str, int], networks: Sequence[OverlayNetwork]
    ) -> None:
        try:
            decision = decide(data, networks)
        except MalformedQuery as exc:
            self.malformed += 1
            log.debug("dropped a malformed DNS packet from %s: %s", addr, exc)
            return
        if not isinstance(decision, Forward):
            self.answered += 1
            self._send(decision, addr)
        elif len(self._pending) >= MAX_FORWARDS or not self.upstreams:
            self._send(servfail(data), addr)
        else:
            self.forwarded += 1
            self._spawn(self._forward(data, addr))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work`, owned by this resolver: `stop` cancels it."""
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = await ask_upstream(data, self.upstreams, self.upstream_port, self.forward_timeout)
        self._send(answer if answer is not None else servfail(data), addr)

    def _send(self, data: bytes | None, addr: tuple[str, int]) -> None:
        if data is not None and self._transport is not None:
            self._transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("overlay DNS socket error: %s", exc)

    def stop(self) -> None:
        for task in self._pending:
            task.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
