"""Where the API listens, and how many connections it holds.

The API listens on the advertise address (TCP, TLS only, token or node certificate needed)
and on `DATA_DIR/shoal.sock` (plain HTTP: local, mode 0600).
Every connection counts against a limit per client address and a limit in total, so a few
thousand half-open connections cannot take the node's file descriptors; one that is refused
is closed at once. A connection that sends no complete request within IDLE_TIMEOUT (at the
start, or after its last answer) is closed by aiohttp's keep-alive timer. Over TLS a
connection counts once its handshake is done; until then it is bounded by the handshake
timeout (IDLE_TIMEOUT) alone.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import ssl
from collections import Counter
from collections.abc import Callable

from aiohttp import web

from node.local_socket import bind_socket

log = logging.getLogger(__name__)

# Seconds a connection may wait for (or dribble) its next request's headers.
IDLE_TIMEOUT = 10.0
MAX_CONNECTIONS = 2048
MAX_PER_CLIENT = 256
# File descriptors a node asks for: the connection limit, the Raft and gossip peers, the
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

    def __init__(self, total: int = MAX_CONNECTIONS, per_client: int = MAX_PER_CLIENT) -> None:
        self.total, self.per_client = total, per_client
        self._open: Counter[str] = Counter()
        self._count = 0
        self.refused = 0

    def admit(self, client: str) -> bool:
        if self._count >= self.total or self._open[client] >= self.per_client:
            self.refused += 1
            return False
        self._open[client] += 1
        self._count += 1
        return True

    def release(self, client: str) -> None:
        self._count -= 1
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


class _Limited(asyncio.Protocol):
    """Stands in front of one aiohttp connection handler and hands it the connection only
    once the limits admit it."""

    def __init__(self, inner: asyncio.Protocol, limits: ConnectionLimits) -> None:
        self._inner, self._limits = inner, limits
        self._client: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) else "local"
        if not self._limits.admit(client):
            transport.abort()
            return
        self._client = client
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._client is None:
            return
        self._limits.release(self._client)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


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
) -> list[asyncio.AbstractServer]:
    """Serve `runner`'s app on HOST:PORT over `tls` and on the unix socket, both behind
    `limits`."""
    loop = asyncio.get_running_loop()
    handler: Callable[[], asyncio.Protocol] = runner.server  # type: ignore[assignment]

    def factory() -> asyncio.Protocol:
        return _Limited(handler(), limits)

    # The handshake must finish within the idle timeout too: a client that opens a connection
    # and says nothing holds it no longer than one that sends no request.
    tcp = await loop.create_server(
        factory,
        host,
        port,
        reuse_address=True,
        family=socket.AF_UNSPEC,
        ssl=tls,
        ssl_handshake_timeout=IDLE_TIMEOUT,
    )
    local = await loop.create_server(factory, sock=bind_socket(socket_path))
    return [tcp, local]
