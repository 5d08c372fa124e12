"""The asyncio proxy data plane over real sockets on loopback addresses, on both the stock
event loop and uvloop: balancing, retry, drain, PROXY v2, half-close, idle timeout."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import threading
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from netoverlay.lb.proxy import ProxyConfig, ProxyDataPlane
from netoverlay.lb.proxy_protocol import SIGNATURE
from netoverlay.lb.types import Backend, ServicePort

LISTEN = "127.0.0.1"
TIMEOUT = 10


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request) -> Callable[[Awaitable], object]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def runner(coro):
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(coro, TIMEOUT))

    return runner


def free_port(host: str = LISTEN) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class BackendServer:
    """A small server on its own loopback address. Each connection first gets the backend's
    name, then an echo of everything until EOF, then a FIN (half-close), then it ends."""

    def __init__(self, name: str, address: str, parse_proxy_header: bool = False) -> None:
        self.name, self.address = name, address
        self.parse_proxy_header = parse_proxy_header
        self.headers: list[tuple[str, int, str, int]] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> BackendServer:
        self.server = await asyncio.start_server(self._serve, self.address, 0)
        return self

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    def endpoint(self, service: str = "web") -> Backend:
        return Backend(service, f"task-{self.name}", "node-1", self.address, self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.parse_proxy_header:
                self.headers.append(await read_proxy_v2(reader))
            writer.write(self.name.encode() + b"\n")
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()


async def read_proxy_v2(reader: asyncio.StreamReader) -> tuple[str, int, str, int]:
    """What a backend does with a PROXY v2 header (IPv4): source and destination."""
    fixed = await reader.readexactly(16)
    assert fixed[:12] == SIGNATURE and fixed[12] == 0x21 and fixed[13] == 0x11
    body = await reader.readexactly(struct.unpack("!H", fixed[14:16])[0])
    src, dst = ipaddress.ip_address(body[0:4]), ipaddress.ip_address(body[4:8])
    sport, dport = struct.unpack("!HH", body[8:12])
    return str(src), sport, str(dst), dport


async def backends(*names: str, **kwargs) -> list[BackendServer]:
    return [
        await BackendServer(n, f"127.0.0.{10 + i}", **kwargs).start() for i, n in enumerate(names)
    ]


async def connect(port: int, source: str | None = None):
    reader, writer = await asyncio.open_connection(
        LISTEN, port, local_addr=(source, 0) if source else None
    )
    name = (await reader.readline()).decode().strip()
    return name, reader, writer


async def plane(port: ServicePort, members: list[BackendServer], **config) -> ProxyDataPlane:
    proxy = ProxyDataPlane(ProxyConfig(host=LISTEN, seed=1, **config))
    await proxy.sync([port], {port.service: [b.endpoint(port.service) for b in members]})
    return proxy


def web(port: int, **kwargs) -> ServicePort:
    return ServicePort("web", port, 80, **kwargs)


def test_open_connections_spread_over_backends(run):
    async def scenario():
        members = await backends("a", "b", "c")
        port = free_port()
        proxy = await plane(web(port), members)
        held = [await connect(port) for _ in range(30)]
        counts = Counter(name for name, _, _ in held)
        for _, _, writer in held:
            writer.close()
        await proxy.stop()
        return counts

    counts = run(scenario())
    assert set(counts) == {"a", "b", "c"} and max(counts.values()) - min(counts.values()) <= 2


def test_a_refused_connect_is_retried_on_another_endpoint(run):
    async def scenario():
        (alive,) = await backends("alive")
        port = free_port()
        dead = Backend("web", "task-dead", "node-2", "127.0.0.20", free_port("127.0.0.20"))
        proxy = ProxyDataPlane(ProxyConfig(host=LISTEN, seed=1))
        await proxy.sync([web(port)], {"web": [dead, alive.endpoint()]})
        names = []
        for _ in range(10):
            name, _, writer = await connect(port)
            names.append(name)
            writer.close()
        stats = proxy.stats()[port]
        await proxy.stop()
        return names, stats

    names, stats = run(scenario())
    assert names == ["alive"] * 10
    assert stats.connect_failures >= 1 and stats.rejected == 0


def test_with_no_reachable_endpoint_the_client_is_closed_and_counted(run):
    async def scenario():
        port = free_port()
        dead = Backend("web", "task-dead", "node-2", "127.0.0.21", free_port("127.0.0.21"))
        proxy = ProxyDataPlane(ProxyConfig(host=LISTEN, seed=1))
        await proxy.sync([web(port)], {"web": [dead]})
        reader, writer = await asyncio.open_connection(LISTEN, port)
        try:
            got = await reader.read()
        except ConnectionResetError:
            got = b""
        writer.close()
        stats = proxy.stats()[port]
        await proxy.stop()
        return got, stats

    got, stats = run(scenario())
    assert got == b"" and stats.rejected == 1 and stats.connections_active == 0


def test_removing_an_endpoint_drains_instead_of_cutting(run):
    async def scenario():
        old, new = await backends("old", "new")
        port = free_port()
        proxy = await plane(web(port), [old])
        name, reader, writer = await connect(port)
        await proxy.sync([web(port)], {"web": [new.endpoint()]})
        writer.write(b"still here\n")
        echoed = await reader.readline()
        later = [await connect(port) for _ in range(5)]
        writer.close()
        for _, _, w in later:
            w.close()
        await proxy.stop()
        return name, echoed, {n for n, _, _ in later}

    name, echoed, later = run(scenario())
    assert name == "old" and echoed == b"still here\n" and later == {"new"}


def test_sync_is_idempotent_and_a_removed_port_drains(run):
    async def scenario():
        (member,) = await backends("a")
        port = free_port()
        proxy = await plane(web(port), [member])
        await proxy.sync([web(port)], {"web": [member.endpoint()]})
        _, reader, writer = await connect(port)
        await proxy.sync([], {})
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(LISTEN, port)
        writer.write(b"ping\n")
        echoed = await reader.readline()
        writer.close()
        await proxy.stop()
        return echoed

    assert run(scenario()) == b"ping\n"


def test_proxy_protocol_v2_tells_the_backend_the_client_address(run):
    async def scenario():
        (member,) = await backends("a", parse_proxy_header=True)
        port = free_port()
        proxy = await plane(web(port, proxy_protocol="v2"), [member])
        name, _, writer = await connect(port, source="127.0.0.77")
        client_port = writer.get_extra_info("sockname")[1]
        writer.close()
        await proxy.stop()
        return name, member.headers, client_port

    name, headers, client_port = run(scenario())
    assert name == "a" and headers == [("127.0.0.77", client_port, LISTEN, headers[0][3])]


def test_half_close_under_load_delivers_every_byte_both_ways(run):
    """Each client sends a different amount, half-closes, and reads the echo to the end:
    the FIN must travel through the proxy after the data, and back."""

    async def one(port: int, size: int) -> bool:
        name, reader, writer = await connect(port)
        payload = bytes([size % 251]) * size
        writer.write(payload)
        writer.write_eof()
        echoed = await reader.read()
        writer.close()
        return echoed == payload

    async def scenario():
        members = await backends("a", "b")
        port = free_port()
        proxy = await plane(web(port), members)
        results = []
        for wave in range(5):
            results += await asyncio.gather(
                *(one(port, 1 + (i * 7919 + wave) % 300_000) for i in range(60))
            )
        stats = proxy.stats()[port]
        await proxy.stop()
        return results, stats

    results, stats = run(scenario())
    assert all(results) and len(results) == 300
    # Backends greet with their name and a newline before echoing.
    assert stats.connections_total == 300 and stats.bytes_out == stats.bytes_in + 2 * 300 > 600


def test_abrupt_clients_under_churn_leave_nothing_open(run):
    """Clients that reset or vanish mid-transfer, mixed with half-closes; the books balance."""

    async def one(port: int, kind: int) -> None:
        reader, writer = await asyncio.open_connection(LISTEN, port)
        writer.write(b"x" * 100_000)
        if kind == 0:
            writer.transport.abort()
            return
        writer.write_eof()
        if kind == 1:
            await reader.read(10)
            writer.transport.abort()
            return
        await reader.read()
        writer.close()

    async def scenario():
        members = await backends("a", "b")
        port = free_port()
        proxy = await plane(web(port), members)
        for _wave in range(4):
            await asyncio.gather(*(one(port, i % 3) for i in range(60)), return_exceptions=True)
        while proxy.stats()[port].connections_active:  # the last closes are in flight
            await asyncio.sleep(0.01)
        stats = proxy.stats()[port]
        await proxy.stop()
        return stats

    stats = run(scenario())
    assert stats.connections_total == 240 and stats.connections_active == 0


def test_connections_stay_open_without_an_idle_timeout_and_close_with_one(run):
    async def scenario():
        (member,) = await backends("a")
        forever, idle = free_port(), free_port()
        proxy = ProxyDataPlane(ProxyConfig(host=LISTEN, seed=1))
        await proxy.sync(
            [web(forever), ServicePort("api", idle, 80, idle_timeout=0.2)],
            {"web": [member.endpoint()], "api": [member.endpoint("api")]},
        )
        _, kept_reader, kept = await connect(forever)
        _, idle_reader, _ = await connect(idle)
        closed_by_proxy = await idle_reader.read()  # returns once the idle timeout fires
        kept.write(b"after\n")
        echoed = await kept_reader.readline()
        kept.close()
        await proxy.stop()
        return closed_by_proxy, echoed

    closed_by_proxy, echoed = run(scenario())
    assert closed_by_proxy == b"" and echoed == b"after\n"


def test_stop_cuts_open_connections(run):
    async def scenario():
        (member,) = await backends("a")
        port = free_port()
        proxy = await plane(web(port), [member])
        _, reader, writer = await connect(port)
        await proxy.stop()
        try:
            rest = await reader.read()
        except ConnectionResetError:
            rest = b""
        writer.close()
        return rest

    assert run(scenario()) == b""


def test_two_services_cannot_share_a_published_port(run):
    async def scenario():
        proxy = ProxyDataPlane(ProxyConfig(host=LISTEN))
        port = free_port()
        with pytest.raises(ValueError, match="published_port"):
            await proxy.sync([web(port), ServicePort("api", port, 80)], {})
        await proxy.stop()

    run(scenario())


def test_a_port_that_cannot_be_opened_does_not_block_the_others(run):
    async def scenario():
        (member,) = await backends("a")
        taken, fine = socket.socket(), free_port()
        taken.bind((LISTEN, 0))
        taken.listen()
        busy = taken.getsockname()[1]
        proxy = ProxyDataPlane(ProxyConfig(host=LISTEN, seed=1))
        await proxy.sync(
            [web(busy), ServicePort("api", fine, 80)],
            {"web": [member.endpoint()], "api": [member.endpoint("api")]},
        )
        failed = dict(proxy.failed_ports)
        name, _, writer = await connect(fine)
        writer.close()
        taken.close()
        await proxy.sync(
            [web(busy), ServicePort("api", fine, 80)],
            {"web": [member.endpoint()], "api": [member.endpoint("api")]},
        )
        recovered, _, writer = await connect(busy)
        writer.close()
        await proxy.stop()
        return failed, busy, name, recovered

    failed, busy, name, recovered = run(scenario())
    assert list(failed) == [busy] and "cannot listen" in failed[busy]
    assert name == recovered == "a"


def test_a_backend_that_answers_and_closes_at_once_loses_nothing(run):
    """uvloop reads a backend before the connect returns: a greeting and FIN sent at once
    must still reach the client, on every connection. The backend runs on a thread of its
    own, as on another host, so that its greeting can beat the proxy's link."""
    server = socket.create_server(("127.0.0.12", 0))

    def greet_each() -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                connection, _ = server.accept()
                connection.sendall(b"hello\n")
                connection.close()

    threading.Thread(target=greet_each, daemon=True).start()
    endpoint = Backend("web", "t1", "n1", "127.0.0.12", server.getsockname()[1])

    async def scenario():
        port = free_port()
        proxy = ProxyDataPlane(ProxyConfig(host=LISTEN, seed=1))
        await proxy.sync([web(port)], {"web": [endpoint]})
        answers = []
        for _ in range(300):
            reader, writer = await asyncio.open_connection(LISTEN, port)
            answers.append(await reader.read())
            writer.close()
        await proxy.stop()
        return answers

    try:
        assert run(scenario()) == [b"hello\n"] * 300
    finally:
        server.close()
