"""A connection held as a long-lived stream (a member's feed) leaves the API's total for a
limit of its own: a voter serves more members than MAX_CONNECTIONS while API clients still
get in, and one stream past its own limit is refused (served over real TLS sockets by the
API's listener)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import aiohttp
import pytest
from aiohttp import web

from node.api.listen import ConnectionLimits, hold_as_stream, listen
from node.pki.authority import create_authority, make_csr, new_key_pem, sign_node
from node.pki.contexts import client_context

pytestmark = pytest.mark.timeout(60)

TOTAL, STREAMS = 4, 6


def test_a_stream_moves_from_the_total_to_the_streams_and_back():
    limits = ConnectionLimits(total=1, per_client=10, streams=1)
    assert limits.admit("a")
    assert not limits.admit("b"), "the total is full"
    assert limits.to_stream()
    assert limits.admit("b"), "a stream leaves the total"
    assert not limits.to_stream(), "the streams are full"
    limits.release("a", stream=True)
    assert limits.to_stream()
    assert (limits.streams_open, limits.refused) == (1, 2)


def _server_tls(tmp_path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    authority = create_authority("c1", time.time())
    key = new_key_pem()
    cert = sign_node(
        authority,
        make_csr("ab" * 8, key),
        node_id="ab" * 8,
        address="127.0.0.1",
        lifetime=3600,
        now=time.time(),
    )
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return server, client_context(authority.cert_pem)


async def test_streams_beyond_the_total_are_served_and_clients_still_get_in(tmp_path):
    release = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        if not hold_as_stream(request):
            raise web.HTTPServiceUnavailable(text="streams full")
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"open\n")
        await release.wait()
        return response

    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/stream", stream)
    app.router.add_get("/plain", plain)
    runner = web.AppRunner(app)
    await runner.setup()
    server_tls, client_tls = _server_tls(tmp_path)
    limits = ConnectionLimits(total=TOTAL, per_client=100, streams=STREAMS)
    port = _free_port()
    listeners = await listen(
        runner,
        limits,
        host="127.0.0.1",
        port=port,
        socket_path=str(tmp_path / "api.sock"),
        tls=server_tls,
    )
    sessions = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls))
        for _ in range(STREAMS + 1)
    ]
    try:
        opened = []
        for session in sessions[:STREAMS]:  # more streams than the total admits connections
            resp = await session.get(f"https://127.0.0.1:{port}/stream")
            assert resp.status == 200
            assert await resp.content.readline() == b"open\n"
            opened.append(resp)
        assert limits.streams_open == STREAMS
        async with sessions[STREAMS].get(f"https://127.0.0.1:{port}/plain") as resp:
            assert resp.status == 200, "an API client is kept out by the streams"
        async with sessions[STREAMS].get(f"https://127.0.0.1:{port}/stream") as resp:
            assert resp.status == 503, "a stream past its limit was served"
        release.set()
        for resp in opened:
            await resp.read()
            resp.close()
        async with sessions[0].get(f"https://127.0.0.1:{port}/plain") as resp:
            assert resp.status == 200
    finally:
        release.set()
        for session in sessions:
            await session.close()
        listeners.close()
        await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
