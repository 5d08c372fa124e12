"""The portable data plane: an asyncio TCP proxy listening on each published ingress port.

`ProxyDataPlane.sync(ports, endpoints)` is level-triggered and idempotent: it opens the
listeners that are missing, swaps endpoint sets in place, and stops listening on ports that
are gone. Removing an endpoint, or a whole port, drains: open connections carry on until they
end by themselves, and only new connections see the change.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from netoverlay.lb.datagram import DatagramListener
from netoverlay.lb.picker import Picker
from netoverlay.lb.proxy_protocol import proxy_header
from netoverlay.lb.splice import BackendHalf, ClientHalf, Pipe
from netoverlay.lb.stats import ServiceCounters, ServiceStats
from netoverlay.lb.types import Backend, BackendKey, ServicePort, endpoints_for, routed_ports

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    # Where published ports listen: the node's advertise address.
    host: str = "127.0.0.1"
    # Each connect attempt to a backend gives up after this long...
    connect_timeout: float = 2.0
    # ...and a client connection tries at most this many different endpoints.
    max_attempts: int = 3
    backlog: int = 1024
    # stop() waits this long for connect attempts to unwind after cancelling them.
    stop_timeout: float = 5.0
    # Seed for the picker's choices; None seeds from the OS (tests pass one to replay).
    seed: int | None = None
    # A UDP flow (one client address) ends after this long without a datagram either way...
    udp_idle_timeout: float = 30.0
    # ...and a UDP port keeps at most this many flows; new clients beyond it are dropped.
    max_udp_flows: int = 4096
    # Listen with SO_REUSEPORT, sharing each port with the other workers of a `WorkerPool`.
    reuse_port: bool = False


class Listener:
    """One published port: its server socket, picker, counters and open connections."""

    def __init__(self, port: ServicePort, config: ProxyConfig, rng: random.Random) -> None:
        self.port = port
        self.config = config
        self.picker = Picker()
        self.counters = ServiceCounters()
        self.rng = rng
        self.pipes: set[Pipe] = set()
        self._connecting: dict[Pipe, asyncio.Task[None]] = {}
        self._server: asyncio.Server | None = None
        self._loop = asyncio.get_running_loop()

    async def open(self) -> None:
        self._server = await self._loop.create_server(
            self._accept,
            self.config.host,
            self.port.published_port,
            reuse_address=True,
            reuse_port=self.config.reuse_port,
            backlog=self.config.backlog,
        )

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    def _accept(self) -> ClientHalf:
        return Pipe(self._loop, self.counters, self.port.idle_timeout, self).client

    def pipe_started(self, pipe: Pipe) -> None:
        self.pipes.add(pipe)
        self.counters.connections_total += 1
        self.counters.connections_active += 1
        self._connecting[pipe] = self._loop.create_task(self._connect(pipe))

    async def _connect(self, pipe: Pipe) -> None:
        tried: set[BackendKey] = set()
        config = self.config
        try:
            for _ in range(config.max_attempts):
                endpoint = self.picker.pick(self.rng, self._loop.time(), tried)
                if endpoint is None:
                    break
                tried.add(endpoint.key)
                backend = await self._try_endpoint(pipe, endpoint)
                if backend is not None:
                    return self._linked(pipe, endpoint, backend)
            self.counters.rejected += 1
            pipe.abort()
        finally:
            self._connecting.pop(pipe, None)

    async def _try_endpoint(self, pipe: Pipe, endpoint: Backend) -> BackendHalf | None:
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                _, backend = await self._loop.create_connection(
                    pipe.new_backend, endpoint.address, endpoint.port
                )
        except (OSError, TimeoutError) as exc:
            self.counters.connect_failures += 1
            self.picker.failed(endpoint, self._loop.time())
            log.debug(
                "connect to %s:%d for %s failed: %s",
                endpoint.address,
                endpoint.port,
                self.port.service,
                exc,
            )
            return None
        self.picker.succeeded(endpoint)
        return backend

    def _linked(self, pipe: Pipe, endpoint: Backend, backend: BackendHalf) -> None:
        if pipe.client.lost:  # the client gave up meanwhile
            if backend.transport is not None:
                backend.transport.close()
            return
        self.picker.opened(endpoint)
        pipe.endpoint = endpoint
        header = b""
        if self.port.proxy_protocol:
            client = pipe.client.transport
            if client is not None:
                header = proxy_header(
                    self.port.proxy_protocol,
                    client.get_extra_info("peername"),
                    client.get_extra_info("sockname"),
                )
        pipe.link(backend, header)

    def pipe_done(self, pipe: Pipe) -> None:
        self.pipes.discard(pipe)
        self.counters.connections_active -= 1
        if pipe.endpoint is not None:
            self.picker.closed(pipe.endpoint)
        connecting = self._connecting.pop(pipe, None)
        if connecting is not None:
            connecting.cancel()

    def abort_all(self) -> list[asyncio.Task[None]]:
        """Cut every connection; returns the connect attempts still unwinding."""
        tasks = list(self._connecting.values())
        for task in tasks:
            task.cancel()
        for pipe in list(self.pipes):
            pipe.abort()
        return tasks

    def stats(self) -> ServiceStats:
        return self.counters.snapshot(
            self.port.service, self.port.published_port, self._loop.time()
        )


class ProxyDataPlane:
    """All published ports of this node, served by asyncio."""

    def __init__(self, config: ProxyConfig = ProxyConfig()) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._listeners: dict[int, Listener] = {}
        self._datagrams: dict[int, DatagramListener] = {}
        # Listeners of removed ports that still have connections draining.
        self._retired: set[Listener] = set()
        # Ports that could not be opened at the last sync, and why; retried on every sync.
        self.failed_ports: dict[int, str] = {}
        self._lock = asyncio.Lock()

    async def sync(self, ports: list[ServicePort], endpoints: dict[str, list[Backend]]) -> None:
        """Converge to serving `ports` with `endpoints` (by service name). A port that cannot
        be opened (say, already in use) is logged and listed in `failed_ports`; the others are
        served regardless."""
        wanted = routed_ports(ports)
        async with self._lock:
            for number in [n for n in self._listeners if n not in wanted]:
                self._retire(self._listeners.pop(number))
            self.failed_ports = {}
            for number, port in wanted.items():
                listener = self._listeners.get(number)
                if listener is None:
                    listener = Listener(port, self.config, self._rng)
                    try:
                        await listener.open()
                    except OSError as exc:
                        self.failed_ports[number] = (
                            f"cannot listen on {self.config.host}:{number}: {exc}"
                        )
                        log.error("%s (service %s)", self.failed_ports[number], port.service)
                        continue
                    self._listeners[number] = listener
                listener.port = port
                listener.picker.replace(endpoints_for(port, endpoints))
            self._retired = {r for r in self._retired if r.pipes}
            await self._sync_datagrams(routed_ports(ports, "udp"), endpoints)

    async def _sync_datagrams(
        self, wanted: dict[int, ServicePort], endpoints: dict[str, list[Backend]]
    ) -> None:
        for number in [n for n in self._datagrams if n not in wanted]:
            self._datagrams.pop(number).stop()
        for number, port in wanted.items():
            listener = self._datagrams.get(number)
            if listener is None:
                listener = DatagramListener(
                    port,
                    self.config.host,
                    self._rng,
                    idle_timeout=self.config.udp_idle_timeout,
                    max_flows=self.config.max_udp_flows,
                    reuse_port=self.config.reuse_port,
                )
                try:
                    await listener.open()
                except OSError as exc:
                    reason = f"cannot listen on {self.config.host}:{number}/udp: {exc}"
                    log.error("%s (service %s)", reason, port.service)
                    self.failed_ports.setdefault(number, reason)
                    continue
                self._datagrams[number] = listener
            listener.port = port
            listener.picker.replace(endpoints_for(port, endpoints))

    def _retire(self, listener: Listener) -> None:
        listener.stop_accepting()
        listener.picker.replace(())
        if listener.pipes:
            self._retired.add(listener)

    def stats(self) -> dict[int, ServiceStats]:
        """Counters of each served port, by published port."""
        return {n: listener.stats() for n, listener in self._listeners.items()}

    async def stop(self) -> None:
        """Stop listening and cut every connection; returns within `stop_timeout`."""
        async with self._lock:
            listeners = [*self._listeners.values(), *self._retired]
            self._listeners, self._retired = {}, set()
            for datagrams in self._datagrams.values():
                datagrams.stop()
            self._datagrams = {}
            tasks: list[asyncio.Task[None]] = []
            for listener in listeners:
                listener.stop_accepting()
                tasks += listener.abort_all()
            if tasks:
                await asyncio.wait(tasks, timeout=self.config.stop_timeout)
