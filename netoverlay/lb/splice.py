"""One proxied TCP connection: two asyncio Protocols spliced back to back.

Protocols rather than streams: bytes go from one transport's `data_received` straight into
the other's `write`, with no task and no buffer copy per chunk. Backpressure is the kernel's:
when one side's write buffer passes its high-water mark asyncio calls `pause_writing` on that
side's protocol, which stops reading the other side until `resume_writing`.

Half-close: an EOF from one side becomes `write_eof` (a TCP FIN, sent once the write buffer
is flushed) on the other, and the connection ends when both directions are done. uvloop has
been seen to abort a process that forwarded half-closes under churn, so this path is tested
on both loops with mixed half-closes, resets and abandoned connections
(tests/integration/test_lb_proxy.py) and runs in the benchmark with a new connection per
request; neither loop crashed. A FIN is never written to a transport already closing.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from netoverlay.lb.stats import ServiceCounters
from netoverlay.lb.types import Backend


class PipeOwner(Protocol):
    def pipe_started(self, pipe: Pipe) -> None:
        """The client connected (reading is paused): find it a backend and `link` it."""

    def pipe_done(self, pipe: Pipe) -> None:
        """Both sides are closed."""


class _Half(asyncio.Protocol):
    """One side of a spliced connection. Reads from its transport, writes to its peer's."""

    __slots__ = ("transport", "peer", "counters", "eof_received_", "eof_sent", "lost", "pipe")

    def __init__(self, pipe: Pipe, counters: ServiceCounters) -> None:
        self.pipe = pipe
        self.counters = counters
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self.eof_received_ = False  # this side sent us a FIN
        self.eof_sent = False  # we sent this side a FIN
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # as every TCP connection's is

    def eof_received(self) -> bool:
        self.eof_received_ = True
        self.pipe.touch()
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.send_eof()
        self.pipe.maybe_finish()
        return True  # keep our transport open: the other direction may still be flowing

    def send_eof(self) -> None:
        """Forward a FIN to this side once its pending writes are flushed."""
        if self.eof_sent or self.lost or self.transport is None or self.transport.is_closing():
            return
        self.eof_sent = True
        self.transport.write_eof()

    def pause_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.eof_received_:
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pipe.side_lost(self, exc)


class ClientHalf(_Half):
    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = stream = cast(asyncio.Transport, transport)
        # Read nothing until a backend is linked. uvloop starts reading right after this
        # callback regardless, hence the early-bytes buffer in data_received.
        stream.pause_reading()
        self.pipe.owner.pipe_started(self.pipe)

    def data_received(self, data: bytes) -> None:
        # Bytes arrive only after connection_made, and a peer only once it is connected: the
        # transports checked here are always there.
        peer = self.peer
        if peer is None:
            self.pipe.early.append(data)
            if self.transport is not None:
                self.transport.pause_reading()
        elif peer.transport is not None:
            peer.transport.write(data)
        self.counters.bytes_in += len(data)
        if self.pipe.idle_deadline is not None:
            self.pipe.touch()


class BackendHalf(_Half):
    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            # uvloop reads as soon as the connection is made, before `create_connection`
            # returns and the pipe is linked: a backend that speaks first (a greeting, or a
            # whole answer and its FIN) would lose its bytes. Hold them until `link`.
            self.pipe.early_reply.append(data)
            if self.transport is not None:
                self.transport.pause_reading()
        elif peer.transport is not None:
            peer.transport.write(data)
        self.counters.bytes_out += len(data)
        if self.pipe.idle_deadline is not None:
            self.pipe.touch()


class Pipe:
    """The pair of halves, the endpoint the backend half reaches, and the idle timer. Its
    owner hears once when the client connects and once when both halves are gone."""

    __slots__ = (
        "client",
        "backend",
        "endpoint",
        "early",
        "early_reply",
        "loop",
        "idle_timeout",
        "idle_deadline",
        "_idle_handle",
        "owner",
        "_done",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        counters: ServiceCounters,
        idle_timeout: float | None,
        owner: PipeOwner,
    ) -> None:
        self.loop = loop
        self.client = ClientHalf(self, counters)
        self.backend: BackendHalf | None = None
        self.endpoint: Backend | None = None
        self.early: list[bytes] = []  # client bytes read before the backend was linked
        self.early_reply: list[bytes] = []  # backend bytes read before it was linked
        self.idle_timeout = idle_timeout
        self.idle_deadline: float | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self.owner = owner
        self._done = False

    def new_backend(self) -> BackendHalf:
        return BackendHalf(self, self.client.counters)

    def link(self, backend: BackendHalf, first_bytes: bytes = b"") -> None:
        """The backend connected: start moving bytes (after `first_bytes`, e.g. a PROXY header)."""
        client = self.client
        self.backend = backend
        backend.peer, client.peer = client, backend
        if (first_bytes or self.early) and backend.transport is not None:
            backend.transport.write(first_bytes + b"".join(self.early))
            self.early.clear()
        if client.eof_received_:
            backend.send_eof()  # the client finished sending while we were connecting
        elif client.transport is not None:
            client.transport.resume_reading()
        if self.early_reply:
            self._flush_early_reply()
            if backend.transport is not None and not backend.eof_received_:
                backend.transport.resume_reading()
        if backend.eof_received_:
            client.send_eof()  # the backend finished before it was linked
            self.maybe_finish()
        if self.idle_timeout is not None:
            deadline = self.idle_deadline = self.loop.time() + self.idle_timeout
            self._idle_handle = self.loop.call_at(deadline, self._check_idle)

    def _flush_early_reply(self) -> None:
        if self.client.transport is not None and not self.client.lost:
            self.client.transport.write(b"".join(self.early_reply))
        self.early_reply.clear()

    def touch(self) -> None:
        if self.idle_timeout is not None:
            self.idle_deadline = self.loop.time() + self.idle_timeout

    def _check_idle(self) -> None:
        # One timer per connection, re-armed lazily: traffic only moves the deadline.
        if self._done or self.idle_deadline is None:
            return
        if self.loop.time() >= self.idle_deadline:
            self.abort()
        else:
            self._idle_handle = self.loop.call_at(self.idle_deadline, self._check_idle)

    def maybe_finish(self) -> None:
        """Both directions sent their FIN: nothing more can flow, end the connection."""
        backend = self.backend
        if backend is not None and self.client.eof_received_ and backend.eof_received_:
            self.close()

    def side_lost(self, side: _Half, exc: Exception | None) -> None:
        other = self.backend if side is self.client else self.client
        if self.early_reply and exc is None:
            self._flush_early_reply()  # a backend that answered and closed before the link
        if other is not None and other.transport is not None and not other.lost:
            if exc is None:
                other.transport.close()  # flushes what is buffered, then FIN
            else:
                other.transport.abort()  # pass a reset on as a reset
        if self.client.lost and (self.backend is None or self.backend.lost) or other is None:
            self._finish()

    def close(self) -> None:
        for side in (self.client, self.backend):
            if side is not None and side.transport is not None and not side.lost:
                side.transport.close()

    def abort(self) -> None:
        for side in (self.client, self.backend):
            if side is not None and side.transport is not None and not side.lost:
                side.transport.abort()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        self.owner.pipe_done(self)
