"""DNS for the tasks of one overlay network, served on this node's address in that network.

    NAME, NAME.NETWORK, ALIAS, ALIAS.NETWORK    A: the service's VIP (its tasks' addresses
                                                when it has no VIP)
    tasks.NAME, tasks.NAME.NETWORK              A: each healthy task's address on the network

Services of other networks are not answered (networks are isolated, names too). Another
name under NETWORK is NXDOMAIN; every other name is forwarded to the node's upstream
resolvers and their answer relayed, so a task resolves the outside world too. `decide` is
pure (bytes in, an answer or "forward" out); `NetworkResolver` is the UDP shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from dnslib import OPCODE, QTYPE, RCODE, RR, A, DNSError, DNSRecord

from netoverlay.dns import MalformedQuery, parse_query
from netoverlay.overlay.types import OverlayNetwork, ServiceOnNetwork

log = logging.getLogger(__name__)

TTL = 2
# Forwarded queries in flight per network; past this a query gets SERVFAIL at once rather
# than memory and sockets without bound.
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


def lookup(network: OverlayNetwork, labels: Sequence[str]) -> tuple[str, ...] | None | Forward:
    """The addresses a name has on `network`; None for NXDOMAIN; Forward when not ours."""
    labels = [label.lower() for label in labels]
    ours = len(labels) > 1 and labels[-1] == network.name.lower()
    if ours:
        labels = labels[:-1]
    services = _names(network)
    if len(labels) == 1 and labels[0] in services:
        service = services[labels[0]]
        return (service.vip,) if service.vip else tuple(sorted(set(service.tasks)))
    if len(labels) == 2 and labels[0] == "tasks" and labels[1] in services:
        return tuple(sorted(set(services[labels[1]].tasks)))
    return None if ours else Forward()


def decide(packet: bytes, network: OverlayNetwork) -> Decision:
    """The reply to one query, or Forward. Raises MalformedQuery for anything else."""
    query = parse_query(packet)
    reply = query.reply(ra=1)
    if query.header.opcode != OPCODE.QUERY or len(query.questions) != 1:
        reply.header.rcode = RCODE.NOTIMP if query.header.opcode != OPCODE.QUERY else RCODE.FORMERR
        return bytes(reply.pack())
    question = query.questions[0]
    labels = [label.decode("ascii", "replace") for label in question.qname.label]
    found = lookup(network, labels)
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


class NetworkResolver(asyncio.DatagramProtocol):
    """Serves one network's DNS on `address`:`port`. `update(network)` swaps what it answers."""

    def __init__(
        self,
        network: OverlayNetwork,
        upstreams: Sequence[str],
        upstream_port: int = 53,
        forward_timeout: float = FORWARD_TIMEOUT,
    ) -> None:
        self.network = network
        self.upstreams = tuple(upstreams)
        self.upstream_port = upstream_port
        self.forward_timeout = forward_timeout
        self.answered = 0
        self.forwarded = 0
        self.malformed = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._forwards: set[asyncio.Task[None]] = set()

    async def start(self, address: str, port: int = 53) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(address, port)
        )
        host, port, *_ = self._transport.get_extra_info("sockname")
        return host, port

    def update(self, network: OverlayNetwork) -> None:
        self.network = network

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > _MAX_PACKET:
            self.malformed += 1
            return
        try:
            decision = decide(data, self.network)
        except MalformedQuery as exc:
            self.malformed += 1
            log.debug("dropped a malformed DNS packet from %s: %s", addr, exc)
            return
        if not isinstance(decision, Forward):
            self.answered += 1
            self._send(decision, addr)
        elif len(self._forwards) >= MAX_FORWARDS or not self.upstreams:
            failed = servfail(data)
            if failed is not None:
                self._send(failed, addr)
        else:
            self.forwarded += 1
            task = asyncio.get_running_loop().create_task(self._forward(data, addr))
            self._forwards.add(task)
            task.add_done_callback(self._forwards.discard)

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = await ask_upstream(data, self.upstreams, self.upstream_port, self.forward_timeout)
        self._send(answer if answer is not None else servfail(data), addr)

    def _send(self, data: bytes | None, addr: tuple[str, int]) -> None:
        if data is not None and self._transport is not None:
            self._transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("overlay DNS socket error: %s", exc)

    def stop(self) -> None:
        for task in self._forwards:
            task.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
