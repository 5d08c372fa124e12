"""The asyncio shell around GossipCore: UDP datagrams, TCP push-pull, a timer, sealing.

Shaped like uvicorn: a Config apart from the service, protocols that only feed bytes to the
sans-I/O core, start -> serve -> stop that waits a bounded time. Every packet is msgpack
sealed with AES-GCM (a key per channel derived from the primary key of the keyring, and
opened under any key of it: netoverlay.gossip.keyring); whatever fails to open or decode is
counted and dropped. The timer sleeps until the core's next deadline and is woken early
whenever a message or a local change may have moved it.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from netoverlay.crypto import OVERHEAD, RefusalKind, SealError
from netoverlay.gossip import codec
from netoverlay.gossip.config import GossipConfig
from netoverlay.gossip.core import GossipCore
from netoverlay.gossip.keyring import CHANNELS, Keyring, KeyringSpec
from netoverlay.gossip.model import (
    Address,
    Event,
    Member,
    Message,
    Outbound,
    SyncRequest,
    SyncResponse,
    TableEntry,
    TableEvent,
)

log = logging.getLogger(__name__)

# A stream frame is a sealed 4-byte length, then the sealed message: a peer proves it holds
# a key of the ring in the first FRAME_HEADER bytes, before the node reads any more from it.
_LENGTH = struct.Struct("!I")
FRAME_HEADER = OVERHEAD + _LENGTH.size
# A full-state exchange of a large cluster is a few hundred kilobytes; refuse absurd frames.
MAX_STREAM_BYTES = 32 * 1024 * 1024
# Push-pull exchanges arrive a few per second at most; more at once is a flood.
MAX_INBOUND_STREAMS = 16


@dataclass(frozen=True, slots=True)
class GossipServiceConfig:
    node_id: str
    # The key gossip starts with (the cluster secret): its ring until `set_keyring`.
    secret: bytes
    host: str = "127.0.0.1"
    port: int = 7422
    # The address others reach us at, when it is not the one bound (host 0.0.0.0, NAT).
    advertise: Address | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    gossip: GossipConfig = field(default_factory=GossipConfig)
    seed: int | None = None
    # Accepted clock skew and replay memory for sealed packets.
    replay_window: float = 60.0
    # Bound on one push-pull exchange (connect, send, receive).
    stream_timeout: float = 5.0
    # How long leave() waits for the news to go out, and stop() for tasks to end.
    leave_timeout: float = 2.0
    stop_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class GossipStats:
    sent_packets: int = 0
    sent_bytes: int = 0
    received_packets: int = 0
    received_bytes: int = 0
    dropped_malformed: int = 0
    dropped_auth: int = 0
    dropped_replay: int = 0
    syncs_out: int = 0
    syncs_in: int = 0
    sync_failures: int = 0


class JoinError(ConnectionError):
    pass


@dataclass(slots=True)
class _Counters:
    """GossipStats while they are counted."""

    sent_packets: int = 0
    sent_bytes: int = 0
    received_packets: int = 0
    received_bytes: int = 0
    dropped_malformed: int = 0
    dropped_auth: int = 0
    dropped_replay: int = 0
    syncs_out: int = 0
    syncs_in: int = 0
    sync_failures: int = 0

    def snapshot(self) -> GossipStats:
        return GossipStats(**asdict(self))

    def drop(self, kind: RefusalKind) -> None:
        match kind:
            case "malformed":
                self.dropped_malformed += 1
            case "auth":
                self.dropped_auth += 1
            case "replay":
                self.dropped_replay += 1


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, service: GossipService) -> None:
        self._service = service

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._service._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("gossip socket error: %s", exc)


class GossipService:
    def __init__(self, config: GossipServiceConfig) -> None:
        self.config = config
        self._counters = _Counters()
        self._udp_keys, self._tcp_keys = (
            Keyring(channel, KeyringSpec.single(config.secret), config.replay_window)
            for channel in CHANNELS
        )
        self._core: GossipCore | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._timer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._inbound = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._listeners: list[Callable[[Event], None]] = []
        self._subscribers: list[asyncio.Queue[Event | None]] = []

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        gossip = config.gossip
        if gossip.packet_overhead < OVERHEAD:
            raise ValueError(f"gossip.packet_overhead: must be at least {OVERHEAD} (the sealing)")
        self._core = GossipCore(
            gossip,
            config.node_id,
            config.advertise or (config.host, config.port),
            now=loop.time(),
            seed=config.seed,
            meta=config.meta,
        )
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(config.host, config.port)
        )
        self._server = await asyncio.start_server(self._serve_stream, config.host, config.port)
        self._timer = asyncio.create_task(self._run_timer(), name=f"gossip-timer-{config.node_id}")

    async def stop(self) -> None:
        """Stop timers and exchanges (bounded by stop_timeout), close the sockets."""
        tasks = [t for t in (self._timer, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.config.stop_timeout)
        self._timer = None
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), self.config.stop_timeout)
            self._server = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for queue in self._subscribers:
            queue.put_nowait(None)

    async def join(self, seeds: Iterable[Address]) -> int:
        """Exchange full state with every seed; returns how many answered (JoinError if none)."""
        core = self._running()
        seeds = [(h, p) for h, p in seeds if (h, p) != core.local.address]
        if not seeds:
            return 0
        requests = core.join(seeds, self._now())
        results = await asyncio.gather(*(self._sync(out) for out in requests))
        joined = sum(results)
        if not joined:
            raise JoinError(f"join: no seed answered ({', '.join(f'{h}:{p}' for h, p in seeds)})")
        return joined

    async def leave(self) -> None:
        """Tell the cluster we are leaving; returns once the news went out (or leave_timeout)."""
        core = self._running()
        self._drained.clear()
        self._dispatch(core.leave(self._now()))
        try:
            await asyncio.wait_for(self._drained.wait(), self.config.leave_timeout)
        except TimeoutError:
            log.info(
                "gossip: leave not fully disseminated within %.1f s", self.config.leave_timeout
            )

    # --- queries and local changes -------------------------------------------------------

    def members(self) -> list[Member]:
        """Every known member, ourselves included; `since` is in the event loop's clock."""
        return self._running().members()

    def local_set(self, key: str, value: Any) -> None:
        self._running().local_set(key, value, self._now())
        self._dispatch([])

    def local_delete(self, key: str) -> None:
        self._running().local_delete(key, self._now())
        self._dispatch([])

    def table_items(self) -> list[TableEntry]:
        return self._running().table_items()

    def set_keyring(self, spec: KeyringSpec) -> None:
        """Accept every key of `spec` and seal with its primary one, from now on (also
        before `start`: a node takes the cluster's ring before it gossips)."""
        self._udp_keys.update(spec)
        self._tcp_keys.update(spec)

    @property
    def keyring(self) -> tuple[str, list[str]]:
        """The ids of the primary key and of every key held."""
        return self._udp_keys.primary, self._udp_keys.ids

    @property
    def stats(self) -> GossipStats:
        return self._counters.snapshot()

    def on_change(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call `callback(event)` for every member and table change; returns an unsubscribe."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def on_table_change(self, callback: Callable[[TableEvent], None]) -> Callable[[], None]:
        return self.on_change(lambda e: callback(e) if isinstance(e, TableEvent) else None)

    async def events(self) -> AsyncIterator[Event]:
        """Every change from now on, until the service stops."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.remove(queue)

    # --- the shell -----------------------------------------------------------------------

    def _running(self) -> GossipCore:
        if self._core is None:
            raise RuntimeError("gossip service is not started")
        return self._core

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _run_timer(self) -> None:
        loop = asyncio.get_running_loop()
        core = self._running()
        while True:
            delay = core.next_deadline() - loop.time()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            self._dispatch(core.tick(loop.time()), rearm=False)

    def _dispatch(self, outbound: list[Outbound], rearm: bool = True) -> None:
        """Send what the core produced, hand out its events, and (unless the timer itself
        is the caller) wake the timer: the core's next deadline may have moved."""
        core = self._running()
        for out in outbound:
            if isinstance(out.message, SyncRequest):
                self._spawn(self._sync(out))
            elif not out.is_stream:
                self._send_datagram(out)
        for event in core.take_events():
            for callback in list(self._listeners):
                try:
                    callback(event)
                except Exception:  # a consumer's bug must not stop gossip
                    log.exception("gossip change callback failed")
            for queue in self._subscribers:
                queue.put_nowait(event)
        if core.local.gone and not core.pending_broadcasts:
            self._drained.set()
        if rearm:
            self._wake.set()

    def _spawn(self, coro: Coroutine[object, None, object]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_datagram(self, out: Outbound) -> None:
        if self._transport is None:
            return
        packet = self._udp_keys.seal(codec.encode(out.message), time.time())
        self._transport.sendto(packet, out.to)
        self._counters.sent_packets += 1
        self._counters.sent_bytes += len(packet)

    def _on_datagram(self, data: bytes, src: Address) -> None:
        counters = self._counters
        counters.received_packets += 1
        counters.received_bytes += len(data)
        message = self._open(self._udp_keys, data)
        if message is None:
            return
        if isinstance(message, (SyncRequest, SyncResponse)):
            counters.drop("malformed")  # full state only travels on streams
            return
        self._dispatch(self._running().handle(src, message, self._now()))

    def _open(self, keys: Keyring, data: bytes) -> Message | None:
        try:
            return codec.decode(keys.open(data, time.time()))
        except SealError as exc:
            self._counters.drop(exc.kind)
            log.debug("gossip: dropped a packet: %s", exc)
        except codec.DecodeError as exc:
            self._counters.drop("malformed")
            log.debug("gossip: dropped a malformed message: %s", exc)
        return None

    # --- push-pull streams ---------------------------------------------------------------

    async def _sync(self, out: Outbound) -> bool:
        """One push-pull exchange as the client; True if the peer answered."""
        self._counters.syncs_out += 1
        try:
            async with asyncio.timeout(self.config.stream_timeout):
                reader, writer = await asyncio.open_connection(*out.to)
                try:
                    await self._write_frame(writer, out.message)
                    reply = await self._read_frame(reader)
                finally:
                    writer.close()
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            self._counters.sync_failures += 1
            log.debug("gossip: push-pull with %s:%s failed: %s", *out.to, exc)
            return False
        if not isinstance(reply, SyncResponse):
            self._counters.sync_failures += 1
            return False
        self._dispatch(self._running().handle(out.to, reply, self._now()))
        return True

    async def _serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        if self._inbound >= MAX_INBOUND_STREAMS:
            self._counters.drop("malformed")
            writer.transport.abort()
            return
        self._inbound += 1
        try:
            async with asyncio.timeout(self.config.stream_timeout):
                request = await self._read_frame(reader)
                if not isinstance(request, SyncRequest):
                    return
                self._counters.syncs_in += 1
                src = (peer[0], peer[1])
                outbound = self._running().handle(src, request, self._now())
                replies = [o for o in outbound if isinstance(o.message, SyncResponse)]
                self._dispatch([o for o in outbound if not isinstance(o.message, SyncResponse)])
                for reply in replies:
                    await self._write_frame(writer, reply.message)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            log.debug("gossip: push-pull from %s failed: %s", peer, exc)
        finally:
            self._inbound -= 1
            writer.close()

    async def _write_frame(self, writer: asyncio.StreamWriter, message: Message) -> None:
        now = time.time()
        sealed = self._tcp_keys.seal(codec.encode(message), now)
        writer.write(self._tcp_keys.seal(_LENGTH.pack(len(sealed)), now) + sealed)
        await writer.drain()

    async def _read_frame(self, reader: asyncio.StreamReader) -> Message | None:
        """The next sealed message, or None (counted) when it is not acceptable: nothing past
        the header is read unless the header opens under a key of the ring."""
        header = await reader.readexactly(FRAME_HEADER)
        try:
            (size,) = _LENGTH.unpack(self._tcp_keys.open(header, time.time()))
        except SealError as exc:
            self._counters.drop(exc.kind)
            return None
        if size > MAX_STREAM_BYTES:
            self._counters.drop("malformed")
            return None
        data = await reader.readexactly(size)
        self._counters.received_bytes += size + FRAME_HEADER
        return self._open(self._tcp_keys, data)
