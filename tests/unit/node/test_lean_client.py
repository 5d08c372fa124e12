"""The CLI's HTTP client against a real aiohttp server: JSON answers, errors, chunked line
streams split anywhere, and peers that do not speak HTTP."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from node.cli.lean_client import ApiError, LeanClient, Unreachable, run_loop_free


@pytest.fixture
async def api():
    async def echo(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        return web.json_response(
            {
                "method": request.method,
                "query": dict(request.query),
                "body": body,
                "auth": request.headers.get("Authorization"),
            }
        )

    async def missing(_request: web.Request) -> web.Response:
        return web.json_response({"error": "no such service 'x'", "field": "service"}, status=404)

    async def lines(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for piece in (b"first li", b"ne\nsecond", b" line\nthird\n", b"no newline at the end"):
            await resp.write(piece)
            await asyncio.sleep(0.01)
        return resp

    async def chunked_json(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for piece in (b'{"rows": [1,', b" 2, 3", b"]}"):
            await resp.write(piece)
            await asyncio.sleep(0.01)
        return resp

    async def named(request: web.Request) -> web.Response:
        return web.json_response({"name": request.match_info["name"]})

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/v1/services/{name}", named)
    app.router.add_get("/missing", missing)
    app.router.add_get("/lines", lines)
    app.router.add_get("/chunked", chunked_json)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_requests_carry_the_body_query_and_token(api: str):
    async with LeanClient(api, "tok") as client:
        got = await client.patch("/echo", {"replicas": 3})
        assert got == {
            "method": "PATCH",
            "query": {},
            "body": {"replicas": 3},
            "auth": "Bearer tok",
        }
        got = await client.get("/echo", service="web", since=5)
        assert got["query"] == {"service": "web", "since": "5"} and got["body"] is None


async def test_names_in_paths_are_percent_encoded(api: str):
    client = LeanClient(api)
    assert await client.get("/v1/services/my web") == {"name": "my web"}
    assert await client.get("/v1/services/wéb") == {"name": "wéb"}
    with pytest.raises(ApiError) as caught:  # a line break stays inside the path
        await client.get("/v1/services/x HTTP/1.1\r\nX-Injected: 1\r\n\r\n")
    assert caught.value.status == 404


def test_a_token_a_header_cannot_carry_is_refused_up_front():
    with pytest.raises(Unreachable, match="header cannot carry"):
        LeanClient("127.0.0.1:7420", "tok\r\nX-Injected: 1")


async def test_an_error_answer_names_its_field(api: str):
    with pytest.raises(ApiError) as caught:
        await LeanClient(api).get("/missing")
    assert (caught.value.status, caught.value.field) == (404, "service")
    with pytest.raises(ApiError, match="no such service"):
        async for _ in LeanClient(api).stream_lines("/missing"):
            pass


async def test_a_stream_yields_whole_lines_however_the_chunks_fall(api: str):
    got = [line async for line in LeanClient(api).stream_lines("/lines")]
    assert got == ["first line", "second line", "third", "no newline at the end"]


async def test_a_peer_that_is_not_an_api_node_is_unreachable_not_a_crash():
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(Unreachable, match="not an HTTP answer"):
            await LeanClient(f"http://127.0.0.1:{port}").get("/v1/nodes")
    finally:
        server.close()
        await server.wait_closed()


async def test_a_silent_peer_times_out():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(Unreachable, match="timed out"):
            await LeanClient(f"http://127.0.0.1:{port}", timeout=0.3).get("/v1/nodes")
    finally:
        server.close()


def test_an_address_that_is_not_http_is_refused_up_front():
    with pytest.raises(Unreachable, match="expected http://HOST:PORT"):
        LeanClient("ftp://127.0.0.1:7420")


async def test_a_node_socket_is_reached_with_the_same_paths_and_a_stale_read(tmp_path):
    """`unix:PATH` (the node's socket in its data dir) carries the request's own path, and
    `stale` asks GETs for the node's local copy."""

    async def where(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "path": request.path,
                "query": dict(request.query),
                "host": request.headers.get("Host"),
            }
        )

    app = web.Application()
    app.router.add_route("*", "/v1/{tail:.*}", where)
    runner = web.AppRunner(app)
    await runner.setup()
    socket_file = str(tmp_path / "shoal.sock")
    await web.UnixSite(runner, socket_file).start()
    try:
        async with LeanClient(f"unix:{socket_file}", stale=True) as client:
            assert await client.get("/v1/cluster") == {
                "path": "/v1/cluster",
                "query": {"stale": "1"},
                "host": "localhost",
            }
            assert (await client.post("/v1/services", {"name": "x"}))["query"] == {}
    finally:
        await runner.cleanup()


# The blocking client (commands that ask and print): the same answers over a plain socket,
# its coroutines run to their end without an event loop (here in a thread, beside the
# server's loop).
def _blocking(coroutine):
    return asyncio.to_thread(run_loop_free, coroutine)


async def test_a_blocking_client_asks_and_reads_as_the_async_one(api: str):
    client = LeanClient(api, "tok", blocking=True)
    assert await _blocking(client.patch("/echo", {"replicas": 3})) == {
        "method": "PATCH",
        "query": {},
        "body": {"replicas": 3},
        "auth": "Bearer tok",
    }
    assert (await _blocking(client.get("/echo", service="web")))["query"] == {"service": "web"}
    assert await _blocking(client.get("/v1/services/wéb")) == {"name": "wéb"}
    with pytest.raises(ApiError) as caught:
        await _blocking(client.get("/missing"))
    assert (caught.value.status, caught.value.field) == (404, "service")
    # A chunked answer, read to its end.
    assert await _blocking(client.get("/chunked")) == {"rows": [1, 2, 3]}
    assert await LeanClient(api).get("/chunked") == {"rows": [1, 2, 3]}


async def test_a_blocking_client_finds_a_bad_peer_a_silent_one_and_no_one_unreachable():
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    for handler, expected in ((garbage, "not an HTTP answer"), (silent, "timed out")):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            client = LeanClient(f"http://127.0.0.1:{port}", timeout=0.3, blocking=True)
            with pytest.raises(Unreachable, match=expected):
                await _blocking(client.get("/v1/nodes"))
        finally:
            server.close()
    with pytest.raises(Unreachable, match="ConnectionRefusedError"):
        await _blocking(LeanClient(f"http://127.0.0.1:{port}", blocking=True).get("/v1/nodes"))


async def test_a_blocking_client_reaches_a_node_socket(tmp_path):
    async def where(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path, "query": dict(request.query)})

    app = web.Application()
    app.router.add_route("*", "/v1/{tail:.*}", where)
    runner = web.AppRunner(app)
    await runner.setup()
    socket_file = str(tmp_path / "shoal.sock")
    await web.UnixSite(runner, socket_file).start()
    try:
        client = LeanClient(f"unix:{socket_file}", stale=True, blocking=True)
        assert await _blocking(client.get("/v1/cluster")) == {
            "path": "/v1/cluster",
            "query": {"stale": "1"},
        }
    finally:
        await runner.cleanup()


def test_a_coroutine_that_waits_on_a_loop_is_refused_not_run_halfway():
    async def sleeps() -> None:
        await asyncio.sleep(0)
        raise AssertionError("never resumed")

    with pytest.raises(RuntimeError, match="needs asyncio"):
        run_loop_free(sleeps())


async def test_https_is_verified_against_the_given_ca_file(tmp_path):
    """An address without a scheme is HTTPS; the server is checked against `ca_file` (the
    cluster's CA), and a server the file's CA did not certify is unreachable, not trusted."""
    import ssl
    import time

    from node.pki.authority import create_authority, make_csr, new_key_pem, sign_node

    ca = create_authority("c0ffee0000000001", time.time())
    key = new_key_pem()
    cert = sign_node(
        ca,
        make_csr("aa11", key),
        node_id="aa11",
        address="127.0.0.1",
        lifetime=3600,
        now=time.time(),
    )
    (tmp_path / "node.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "other.pem").write_bytes(create_authority("c0ffee0000000002", time.time()).cert_pem)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(tmp_path / "node.pem", tmp_path / "key.pem")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{"ok": true}')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=served)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await LeanClient(f"127.0.0.1:{port}", ca_file=str(tmp_path / "ca.pem")).get(
            "/healthz"
        ) == {"ok": True}
        with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
            await LeanClient(f"127.0.0.1:{port}", ca_file=str(tmp_path / "other.pem")).get("/")
    finally:
        server.close()
        await server.wait_closed()
