"""The proxy data plane for a published UDP port: one flow per client address.

A client's first datagram picks an endpoint (least active flows over two choices) and opens
a connected socket to it; every later datagram of that client takes the same socket, and the
endpoint's answers go back to the client from the published port. A flow that sees no
datagram either way for `idle_timeout` seconds ends, which frees its socket and its share of
the endpoint. The number of flows is bounded: a new client beyond it is dropped and counted
as rejected. Counters are the same as a TCP port's, a flow standing for a connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import cast

from netoverlay.lb.picker import Picker
from netoverlay.lb.stats import ServiceCounters, ServiceStats
from netoverlay.lb.types import Backend, ServicePort

log = logging.getLogger(__name__)

Address = tuple[str, int]


class _Flow(asyncio.DatagramProtocol):
    """One client's connected socket towards its endpoint."""

    def __init__(self, listener: DatagramListener, client: Address, endpoint: Backend) -> None:
        self.listener = listener
        self.client = client
        self.endpoint = endpoint
        self.transport: asyncio.DatagramTransport | None = None
        self.last_seen = listener.loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.last_seen = self.listener.loop.time()
        self.listener.counters.bytes_out += len(data)
        self.listener.reply(data, self.client)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error (say, port unreachable): the endpoint is not serving. Forget the flow
        # so that the client's next datagram picks again.
        self.listener.counters.connect_failures += 1
        self.listener.picker.failed(self.endpoint, self.listener.loop.time())
        self.listener.end(self)

    def send(self, data: bytes) -> None:
        self.last_seen = self.listener.loop.time()
        self.listener.counters.bytes_in += len(data)
        if self.transport is not None:
            self.transport.sendto(data)


class DatagramListener(asyncio.DatagramProtocol):
    """One published UDP port: its socket, picker, counters and flows."""

    def __init__(
        self,
        port: ServicePort,
        host: str,
        rng: random.Random,
        *,
        idle_timeout: float,
        max_flows: int,
        reuse_port: bool = False,
    ) -> None:
        self.port = port
        self.host = host
        self.rng = rng
        self.idle_timeout = idle_timeout
        self.max_flows = max_flows
        # With SO_REUSEPORT the kernel hashes a client's 4-tuple to one worker: its flow stays.
        self.reuse_port = reuse_port
        self.picker = Picker()
        self.counters = ServiceCounters()
        self.loop = asyncio.get_running_loop()
        self.flows: dict[Address, _Flow] = {}
        # Clients whose flow is being opened, with what they sent meanwhile (bounded).
        self._opening: dict[Address, list[bytes]] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.loop.create_datagram_endpoint(
            lambda: self,
            local_addr=(self.host, self.port.published_port),
            reuse_port=self.reuse_port,
        )
        self._sweeper = self.loop.create_task(self._sweep())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        client = (addr[0], addr[1])
        flow = self.flows.get(client)
        if flow is not None:
            flow.send(data)
            return
        waiting = self._opening.get(client)
        if waiting is not None:
            if len(waiting) < 16:  # a burst before the flow exists; beyond, UDP may drop
                waiting.append(data)
            return
        if len(self.flows) + len(self._opening) >= self.max_flows:
            self.counters.rejected += 1
            return
        endpoint = self.picker.pick(self.rng, self.loop.time(), set())
        if endpoint is None:
            self.counters.rejected += 1
            return
        self._opening[client] = [data]
        self.loop.create_task(self._open_flow(client, endpoint))

    async def _open_flow(self, client: Address, endpoint: Backend) -> None:
        try:
            _, flow = await self.loop.create_datagram_endpoint(
                lambda: _Flow(self, client, endpoint), remote_addr=(endpoint.address, endpoint.port)
            )
        except OSError as exc:
            self._opening.pop(client, None)
            self.counters.connect_failures += 1
            self.picker.failed(endpoint, self.loop.time())
            log.debug("udp flow to %s:%d failed: %s", endpoint.address, endpoint.port, exc)
            return
        waiting = self._opening.pop(client, [])
        if self._transport is None or self._transport.is_closing():
            if flow.transport is not None:
                flow.transport.close()
            return
        self.flows[client] = flow
        self.picker.opened(endpoint)
        self.counters.connections_total += 1
        self.counters.connections_active += 1
        for data in waiting:
            flow.send(data)

    def reply(self, data: bytes, client: Address) -> None:
        if self._transport is not None:
            self._transport.sendto(data, client)

    def end(self, flow: _Flow) -> None:
        if self.flows.get(flow.client) is not flow:
            return
        del self.flows[flow.client]
        self.picker.closed(flow.endpoint)
        self.counters.connections_active -= 1
        if flow.transport is not None:
            flow.transport.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(self.idle_timeout / 2, 5.0))
            cutoff = self.loop.time() - self.idle_timeout
            for flow in [f for f in self.flows.values() if f.last_seen < cutoff]:
                self.end(flow)

    def stop(self) -> None:
        """Stop receiving and end every flow: datagrams carry no connection to drain."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._transport is not None:
            self._transport.close()
        for flow in list(self.flows.values()):
            self.end(flow)

    def stats(self) -> ServiceStats:
        return self.counters.snapshot(self.port.service, self.port.published_port, self.loop.time())
