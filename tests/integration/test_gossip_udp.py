"""Real GossipService instances on 127.0.0.1..5: sealed UDP + TCP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import time

import msgpack
import pytest

from netoverlay.crypto import Sealer, derive_key
from netoverlay.gossip import GossipService, GossipServiceConfig, JoinError, MemberState, codec
from netoverlay.gossip.keyring import KeyringSpec, key_id
from netoverlay.gossip.model import MemberEvent, Ping
from netoverlay.gossip.service import FRAME_HEADER, MAX_INBOUND_STREAMS

SECRET = b"integration-secret-0123456789"
HOSTS = [f"127.0.0.{i}" for i in range(1, 6)]


def free_port() -> int:
    """A port free for both UDP and TCP on every test host."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            with contextlib.ExitStack() as stack:
                for host in HOSTS:
                    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                        s = stack.enter_context(socket.socket(socket.AF_INET, kind))
                        s.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on all test addresses")


async def until(services, condition, timeout: float = 20.0) -> None:
    """Wait (woken by gossip changes, no polling) until `condition()` holds."""
    changed = asyncio.Event()
    unsubscribe = [s.on_change(lambda _e: changed.set()) for s in services]
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await changed.wait()
                changed.clear()
    finally:
        for undo in unsubscribe:
            undo()


def states(service) -> dict[str, MemberState]:
    return {m.node_id: m.state for m in service.members()}


@pytest.fixture
async def cluster():
    port = free_port()
    services = [
        GossipService(
            GossipServiceConfig(f"n{i}", SECRET, host=h, port=port, seed=i, meta={"api": 7420 + i})
        )
        for i, h in enumerate(HOSTS[:4])
    ]
    for s in services:
        await s.start()
    try:
        for s in services[1:]:
            assert await s.join([(HOSTS[0], port)]) == 1
        await until(
            services,
            lambda: all(
                len(states(s)) == 4 and set(states(s).values()) == {MemberState.ALIVE}
                for s in services
            ),
        )
        yield services, port
    finally:
        for s in services:
            await s.stop()


async def test_a_stopped_service_is_declared_dead_by_the_others(cluster):
    services, _ = cluster
    seen = []
    services[2].on_table_change(seen.append)
    services[1].local_set("web/1", {"port": 8080})
    await until(
        services, lambda: all(any(e.key == "web/1" for e in s.table_items()) for s in services)
    )
    assert [(e.owner, e.key, e.entry.value) for e in seen] == [("n1", "web/1", {"port": 8080})]
    assert {m.meta["api"] for m in services[0].members()} == {7420, 7421, 7422, 7423}

    async def death_of_n3():
        async for event in services[0].events():
            if (
                isinstance(event, MemberEvent)
                and event.member.node_id == "n3"
                and event.member.state == MemberState.DEAD
            ):
                return event

    watcher = asyncio.create_task(death_of_n3())
    await asyncio.sleep(0)  # let it subscribe
    await services[3].stop()
    event = await asyncio.wait_for(watcher, 20)
    assert event.previous == MemberState.SUSPECT
    others = services[:3]
    await until(others, lambda: all(states(s)["n3"] == MemberState.DEAD for s in others))
    await services[1].leave()
    await until(
        others, lambda: all(states(s)["n1"] == MemberState.LEFT for s in (services[0], services[2]))
    )
    # The leaver's endpoints are gone from the survivors' tables.
    assert not any(e.owner == "n1" for e in services[0].table_items())


async def test_garbage_replays_and_foreign_keys_are_counted_and_ignored(cluster):
    services, port = cluster
    target = services[0]
    before = target.stats
    sealer = Sealer(derive_key(SECRET, "gossip/udp"))
    valid = sealer.seal(codec.encode(Ping(1, "n0")), time.time())
    packets = [
        b"\x00garbage",  # too short / wrong version
        msgpack.packb([1, 1, "n0", []]),  # plain msgpack, not sealed
        b"\x01" + os.urandom(60),  # sealed-looking noise
        Sealer(derive_key(b"another-cluster-secret-000", "gossip/udp")).seal(b"x", time.time()),
        sealer.seal(b"\xc1 not msgpack", time.time()),  # authentic but undecodable
        sealer.seal(msgpack.packb([1, "seq", "n0", []]), time.time()),
        valid,
        valid,  # the second is a replay
    ]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOSTS[4], 0))
    sock.setblocking(False)
    try:
        for p in packets:
            sock.sendto(p, (HOSTS[0], port))
        loop = asyncio.get_running_loop()
        ack = codec.decode(
            Sealer(derive_key(SECRET, "gossip/udp")).open(
                await asyncio.wait_for(loop.sock_recv(sock, 2048), 5), time.time()
            )
        )
        assert ack.seq == 1  # the valid ping was answered once
        # Stream garbage on the TCP port, too.
        reader, writer = await asyncio.open_connection(HOSTS[0], port)
        writer.write(b"\x00\x00\x00\x05hello".ljust(FRAME_HEADER, b"."))
        await writer.drain()
        assert await reader.read() == b""
        writer.close()
    finally:
        sock.close()
    after = target.stats
    assert after.dropped_malformed - before.dropped_malformed == 5  # 4 datagrams, 1 stream
    assert after.dropped_auth - before.dropped_auth == 2
    assert after.dropped_replay - before.dropped_replay == 1
    # Still healthy: everybody alive, nobody new.
    assert set(states(target)) == {"n0", "n1", "n2", "n3"}
    assert set(states(target).values()) == {MemberState.ALIVE}


async def test_a_keyring_opens_every_key_it_holds_and_seals_with_its_primary(cluster):
    """What a rotation relies on: a node sealing with a new key is heard by every node that
    holds it, and not by one that does not (which is why the rotation waits for every node
    to hold a key before any seals with it); push-pull (TCP) goes through the ring too."""
    services, port = cluster
    new = b"n" * 32
    both = KeyringSpec({key_id(SECRET): SECRET, key_id(new): new}, key_id(new))
    for s in services[1:]:
        s.set_keyring(dataclasses.replace(both, primary=key_id(SECRET)))
    services[0].set_keyring(both)  # seals with the new key; the others hold it
    assert services[0].keyring == (key_id(new), sorted([key_id(SECRET), key_id(new)]))
    before = [s.stats for s in services]
    assert await services[0].join([(HOSTS[1], port)]) == 1  # a push-pull sealed with it
    services[0].local_set("k", 1)
    await until(services, lambda: all(any(e.key == "k" for e in s.table_items()) for s in services))
    assert [
        s.stats.dropped_auth - b.dropped_auth for s, b in zip(services, before, strict=True)
    ] == [0] * 4
    # A node holding only the old key hears nothing from it.
    services[3].set_keyring(KeyringSpec.single(SECRET))
    services[0].local_set("k", 2)
    # Counters make no gossip event to wake on: look for a few probe rounds.
    async with asyncio.timeout(10):
        while services[3].stats.dropped_auth == before[3].dropped_auth:
            await asyncio.sleep(0.1)


async def test_a_node_with_the_wrong_key_is_never_admitted(cluster):
    services, port = cluster
    intruder = GossipService(
        GossipServiceConfig("intruder", b"not-the-cluster-secret-42", host=HOSTS[4], port=port)
    )
    await intruder.start()
    try:
        before = services[0].stats.dropped_auth
        with pytest.raises(JoinError):
            await intruder.join([(HOSTS[0], port)])
        assert services[0].stats.dropped_auth > before
        assert [m.node_id for m in intruder.members()] == ["intruder"]
        assert all("intruder" not in states(s) for s in services)
    finally:
        await intruder.stop()


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """The peer closed (or reset, having left data unread) within 2 s."""
    try:
        return await asyncio.wait_for(reader.read(), 2) == b""
    except ConnectionResetError:
        return True


async def test_a_stream_without_the_key_is_dropped_before_its_frame_is_read():
    """An unauthenticated peer announcing a 30 MB frame is cut off after the sealed header;
    and no more than MAX_INBOUND_STREAMS streams are held at once."""
    port = free_port()
    target = GossipService(GossipServiceConfig("n0", SECRET, host=HOSTS[0], port=port))
    await target.start()
    try:
        reader, writer = await asyncio.open_connection(HOSTS[0], port)
        writer.write(b"\x01\xe0\x00\x00" + os.urandom(FRAME_HEADER - 4) + b"x" * (1 << 20))
        started = time.monotonic()
        assert await closed_by_peer(reader)  # cut off, not read to the end
        assert time.monotonic() - started < target.config.stream_timeout
        writer.close()
        assert target.stats.dropped_auth + target.stats.dropped_malformed >= 1

        idle = [await asyncio.open_connection(HOSTS[0], port) for _ in range(MAX_INBOUND_STREAMS)]
        await asyncio.sleep(0.1)
        extra_reader, extra_writer = await asyncio.open_connection(HOSTS[0], port)
        assert await closed_by_peer(extra_reader)  # refused at once
        for _, held in [*idle, (extra_reader, extra_writer)]:
            held.close()
    finally:
        await target.stop()
