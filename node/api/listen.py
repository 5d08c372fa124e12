"""Where the API listens, and how many connections it holds.

The API listens on the advertise address (TCP, TLS only, token or node certificate needed)
and on `DATA_DIR/shoal.sock` (plain HTTP: local, mode 0600).
Every connection counts against a limit per client address and a limit in total from the
moment it is accepted, its TLS handshake included, so a few thousand half-open connections
cannot take the node's file descriptors; one that is refused is closed at once. A handshake
not done within HANDSHAKE_TIMEOUT ends the connection; one that then sends no complete request
within IDLE_TIMEOUT (at the start, or after its last answer) is closed by aiohttp's keep-alive
timer.

A connection that becomes a member's feed stream (one long-lived response per member, on the
voter it follows) leaves the total for its own limit, MAX_STREAMS: a voter serves the members
that follow it without taking the places of API clients, and a cluster's size is not capped
by MAX_CONNECTIONS. It still counts against its client address's limit.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from node.local_socket import bind_socket

log = logging.getLogger(__name__)

# Seconds a connection may wait for (or dribble) its next request's headers.
IDLE_TIMEOUT = 10.0
# Seconds a TCP connection may take to finish its TLS handshake (a client on the other side
# of the world needs well under one).
HANDSHAKE_TIMEOUT = 5.0
# Seconds between attempts to accept when the process is out of file descriptors.
ACCEPT_RETRY = 0.1
MAX_CONNECTIONS = 2048
MAX_PER_CLIENT = 256
# Feed streams a voter holds at once: 10,000 members over 2 followers, or all of them on one
# when the other is down.
MAX_STREAMS = 10_000
# File descriptors a node asks for: the connection limits, the Raft and gossip peers, the
# routing mesh's proxied connections, task logs.
WANTED_NOFILE = 65536


def raise_file_limit(wanted: int = WANTED_NOFILE) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (up to the hard limit); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft


class ConnectionLimits:
    """Counts open connections by client address; `admit` says whether one more may stay."""

    def __init__(
        self,
        total: int = MAX_CONNECTIONS,
        per_client: int = MAX_PER_CLIENT,
        streams: int = MAX_STREAMS,
    ) -> None:
        self.total, self.per_client, self.streams = total, per_client, streams
        self._open: Counter[str] = Counter()
        self._count = 0
        self.streams_open = 0
        self.refused = 0

    def admit(self, client: str) -> bool:
        if self._count >= self.total or self._open[client] >= self.per_client:
            self.refused += 1
            return False
        self._open[client] += 1
        self._count += 1
        return True

    def to_stream(self) -> bool:
        """Move one admitted connection from the total to the streams, if one more fits."""
        if self.streams_open >= self.streams:
            self.refused += 1
            return False
        self._count -= 1
        self.streams_open += 1
        return True

    def release(self, client: str, stream: bool = False) -> None:
        if stream:
            self.streams_open -= 1
        else:
            self._count -= 1
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


@dataclass
class Listeners:
    """The API's servers: the unix socket's, and the TCP listener's accept loop with the TLS
    handshakes under way."""

    servers: list[asyncio.AbstractServer] = field(default_factory=list)
    tasks: set[asyncio.Task] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for task in self.tasks:
            task.cancel()


class _Limited(asyncio.Protocol):
    """Stands in front of one aiohttp connection handler and holds the connection's place in
    the limits until it ends. A TCP connection was admitted when it was accepted (`admitted`
    is its client), a unix socket's is admitted here."""

    def __init__(
        self, inner: asyncio.Protocol, limits: ConnectionLimits, admitted: str | None = None
    ) -> None:
        self._inner, self._limits = inner, limits
        self._client = admitted
        self.connected = False
        self.stream = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._client is None:
            peer = transport.get_extra_info("peername")
            client = peer[0] if isinstance(peer, tuple) else "local"
            if not self._limits.admit(client):
                transport.abort()
                return
            self._client = client
        self.connected = True
        self._inner.connection_made(transport)

    def to_stream(self) -> bool:
        if not self.stream and self._client is not None:
            self.stream = self._limits.to_stream()
        return self.stream

    def release(self) -> None:
        if self._client is not None:
            self._limits.release(self._client, self.stream)
            self._client = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connected:
            self.release()
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def hold_as_stream(request: web.Request) -> bool:
    """Count the request's connection as a long-lived stream from now until it closes; False
    when this node holds as many streams as it may (an app served without limits: True)."""
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol.to_stream() if isinstance(protocol, _Limited) else True


async def _accept(
    listener: socket.socket,
    handler: Callable[[], asyncio.Protocol],
    limits: ConnectionLimits,
    tls: ssl.SSLContext,
    listeners: Listeners,
) -> None:
    """Admits each TCP connection as it is accepted, before its TLS handshake (a server made
    by `loop.create_server(ssl=...)` would show it only once the handshake is done)."""
    loop = asyncio.get_running_loop()
    with listener:
        while True:
            try:
                connection, peer = await loop.sock_accept(listener)
            except OSError as exc:  # out of descriptors: the limits should have kept us off
                log.warning("API: cannot accept a connection: %s", exc)
                await asyncio.sleep(ACCEPT_RETRY)
                continue
            if not limits.admit(peer[0]):
                connection.close()
                continue
            listeners.spawn(_handshake(connection, _Limited(handler(), limits, peer[0]), tls))


async def _handshake(connection: socket.socket, protocol: _Limited, tls: ssl.SSLContext) -> None:
    try:
        await asyncio.get_running_loop().connect_accepted_socket(
            lambda: protocol, connection, ssl=tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
        )
    except OSError as exc:  # timed out, refused, or the client went away
        log.debug("API: TLS handshake failed: %s", exc)
        connection.close()
    finally:
        if not protocol.connected:  # it never reached the handler, which would release it
            protocol.release()


def runner_options() -> dict:
    # No lingering: a body left unread (refused early, over its limit, undecodable) ends the
    # connection instead of being read and thrown away, which also fails loudly on bad gzip.
    return {"keepalive_timeout": IDLE_TIMEOUT, "lingering_time": 0}


async def listen(
    runner: web.AppRunner,
    limits: ConnectionLimits,
    *,
    host: str,
    port: int,
    socket_path: str,
    tls: ssl.SSLContext,
) -> Listeners:
    """Serve `runner`'s app on HOST:PORT over `tls` and on the unix socket, both behind
    `limits`."""
    loop = asyncio.get_running_loop()
    handler: Callable[[], asyncio.Protocol] = runner.server  # type: ignore[assignment]
    listeners = Listeners()
    family = (await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))[0][0]
    listener = socket.create_server((host, port), family=family)
    listener.setblocking(False)
    listeners.spawn(_accept(listener, handler, limits, tls, listeners))
    listeners.servers.append(
        await loop.create_server(lambda: _Limited(handler(), limits), sock=bind_socket(socket_path))
    )
    return listeners
