"""The CLI's client for Shoal's API: HTTP/1.1 over one connection a request.

The `shoal` command answers one request and exits, so what it imports is most of what it
costs: aiohttp alone takes about 0.1 s of CPU to import, several times the request itself,
and asyncio about 40 ms. This client speaks the small part of HTTP the API needs (JSON answers
with a length, chunked streams of lines) and has the interface of node.client.ShoalClient,
which nodes use to talk to each other. The errors and the decoding of answers are shared
with it.

It reads answers in two ways from one reader with no I/O (`_answer`, which says what bytes
it needs next): over asyncio streams, for commands that follow streams or do several things
at once; or, with `blocking=True`, over a plain socket, for the commands that ask a question
and print the answer: their coroutines then never wait on an event loop, and
`run_loop_free` runs them without one, so such a command never imports asyncio.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from node.local_socket import reachable

# An answer larger than this is not an API answer: stop reading instead of filling memory.
MAX_BODY = 256 * 1024 * 1024
MAX_HEADER = 64 * 1024
DEFAULT_TIMEOUT = 10.0
# What a path may hold as it is (RFC 3986 pchar and '/'); '%' keeps escapes already made.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


class ApiError(Exception):
    """The API answered with an error status."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.status = status
        self.message = message
        self.field = field


class Unreachable(Exception):
    """No answer from the API at all."""


UNIX_PREFIX = "unix:"
# Every answer says from which state it was served (the applied count a blocking query
# passes back as `index`) and whether the node knows a leader; see node.api.consistency.
INDEX_HEADER = "X-Shoal-Index"
KNOWN_LEADER_HEADER = "X-Shoal-Known-Leader"


def base_url(addr: str) -> str:
    """The URL prefix for `addr`: HOST:PORT (a node's API, which serves HTTPS only),
    http(s)://HOST:PORT, or unix:PATH (a node's socket, plain HTTP, whose requests name the
    host `localhost`)."""
    if addr.startswith(UNIX_PREFIX):
        return "http://localhost"
    addr = addr.rstrip("/")
    return addr if "://" in addr else f"https://{addr}"


def decode(status: int, text: str) -> Any:
    """The JSON of an answer, or the ApiError it stands for."""
    try:
        body = json.loads(text) if text else None
    except json.JSONDecodeError:
        body = None
    if status >= 400:
        if isinstance(body, dict) and "error" in body:
            raise ApiError(status, str(body["error"]), body.get("field"))
        raise ApiError(status, text.strip() or f"HTTP {status}")
    return body


class _Malformed(Exception):
    """The peer did not answer in HTTP/1.1 as an API node does."""


# -- reading an answer, without I/O ------------------------------------------------------
# The steps, plain classes: dataclasses would import `inspect`, a tenth of a command's CPU.
class _Line:
    """Wanted: bytes up to and including the next b"\\n" (at most MAX_HEADER)."""

    __slots__ = ()


class _Exactly:
    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


class _Some:
    """Wanted: whatever has arrived, up to 64 KiB; b"" at the end of the stream."""

    __slots__ = ()


class _Head:
    __slots__ = ("status", "headers")

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers


class _Chunk:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


_Step = _Line | _Exactly | _Some | _Head | _Chunk


def _answer(limit: int = MAX_BODY) -> Iterator[_Step]:
    """The steps of reading one answer: a wanted read (sent back the bytes read), then the
    head, then the body's chunks as they arrive (by Content-Length, chunked, or to the close)."""
    status_line = (yield _Line()).decode("latin-1").rstrip("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise _Malformed(f"not an HTTP answer: {status_line[:80]!r}")
    headers, size = {}, len(status_line)
    while (line := (yield _Line())) not in (b"\r\n", b"\n", b""):
        size += len(line)
        if size > MAX_HEADER:
            raise _Malformed(f"response headers over {MAX_HEADER} bytes")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    yield _Head(int(code), headers)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        total = 0
        while True:
            size_line = yield _Line()
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _Malformed(f"bad chunk size {size_line[:40]!r}") from None
            total += size
            if size < 0 or total > limit:
                raise _Malformed(f"answer over {limit} bytes")
            if size == 0:
                return
            chunk = yield _Exactly(size + 2)
            yield _Chunk(chunk[:-2])
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise _Malformed(f"bad Content-Length {headers['content-length'][:40]!r}") from None
        if not 0 <= length <= limit:
            raise _Malformed(f"answer over {limit} bytes")
        if length:
            yield _Chunk((yield _Exactly(length)))
    else:
        total = 0
        while chunk := (yield _Some()):
            total += len(chunk)
            if total > limit:
                raise _Malformed(f"answer over {limit} bytes")
            yield _Chunk(chunk)


def _short(wanted: int, got: bytes) -> _Malformed:
    return _Malformed(f"the answer ended early ({len(got)} of {wanted} bytes)")


def _read_blocking(stream: Any) -> Iterator[_Head | _Chunk]:
    """The head and chunks of an answer read from a socket's file."""
    steps, value = _answer(), None
    while True:
        try:
            step = steps.send(value)
        except StopIteration:
            return
        value = None
        if isinstance(step, _Line):
            value = stream.readline(MAX_HEADER)
            if value and not value.endswith(b"\n"):
                raise _Malformed(f"a header line over {MAX_HEADER} bytes")
        elif isinstance(step, _Exactly):
            value = stream.read(step.size)
            if len(value) != step.size:
                raise _short(step.size, value)
        elif isinstance(step, _Some):
            value = stream.read1(65536)
        else:
            yield step


async def _read_async(reader: Any, limit: int = MAX_BODY) -> AsyncIterator[_Head | _Chunk]:
    """The same, from an asyncio StreamReader."""
    import asyncio

    steps, value = _answer(limit), None
    while True:
        try:
            step = steps.send(value)
        except StopIteration:
            return
        value = None
        if isinstance(step, _Line):
            try:
                value = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                raise _Malformed(f"a header line over {MAX_HEADER} bytes") from None
            except asyncio.IncompleteReadError as exc:
                value = exc.partial
        elif isinstance(step, _Exactly):
            value = await reader.readexactly(step.size)
        elif isinstance(step, _Some):
            value = await reader.read(65536)
        else:
            yield step


def run_loop_free(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never waits on an event loop (a command whose client blocks) to
    its end, without one."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError(f"{coroutine.__qualname__} waited on an event loop: it needs asyncio")


# How a connection fails: refused, reset, cut short, timed out, or not HTTP. (asyncio's
# IncompleteReadError is an EOFError, its LimitOverrunError reported as _Malformed.)
_FAILURES = (OSError, TimeoutError, EOFError, _Malformed)


class LeanClient:
    def __init__(
        self,
        addr: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        stale: bool = False,
        blocking: bool = False,
        ca_file: str | None = None,
    ) -> None:
        """`ca_file`: the CA bundle (PEM) an HTTPS server is verified against; without it,
        the system's trust store."""
        self.base = base_url(addr)
        self._unix = addr[len(UNIX_PREFIX) :] if addr.startswith(UNIX_PREFIX) else None
        parts = urlsplit(self.base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Unreachable(
                f"cannot use {addr!r} as an API address: expected "
                f"http://HOST:PORT or https://HOST:PORT"
            )
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        try:
            self._port = parts.port or (443 if self._tls else 80)
        except ValueError:
            raise Unreachable(f"cannot use {addr!r} as an API address: bad port") from None
        self._prefix = parts.path
        self._headers = {
            "Host": parts.netloc,
            "Accept": "application/json",
            "Connection": "close",
            "User-Agent": "shoal-cli",
        }
        if token:
            if not token.isascii() or not token.isprintable():
                raise Unreachable("the API token holds characters an HTTP header cannot carry")
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout
        self._ssl: Any = None
        self._ca_file = ca_file
        # Reads answer from the asked node's copy instead of a linearizable read.
        self._read_params = {"stale": "1"} if stale else {}
        self.blocking = blocking

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    async def close(self) -> None:
        return None

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        params: dict | None = None,
        content_type: str | None = None,
    ) -> Any:
        if json_body is not None:
            data, content_type = json.dumps(json_body).encode(), "application/json"
        head, body = await self._round_trip(self._message(method, path, params, data, content_type))
        return decode(head.status, body.decode(errors="replace"))

    async def _round_trip(self, message: bytes) -> tuple[_Head, bytes]:
        try:
            if self.blocking:
                return self._exchange_blocking(message)
            return await self._exchange_async(message)
        except _FAILURES as exc:
            raise self._unreachable(exc) from None

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params or None)

    async def get_at_index(self, path: str, **params: Any) -> tuple[Any, int]:
        """GET `path` and the index of the state it was served from (`X-Shoal-Index`)."""
        head, body = await self._round_trip(self._message("GET", path, params or None, None, None))
        index = head.headers.get(INDEX_HEADER.lower(), "0")
        return decode(head.status, body.decode(errors="replace")), int(
            index
        ) if index.isdigit() else 0

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.request("POST", path, json_body=body)

    async def patch(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, json_body=body)

    async def delete(self, path: str, **params: Any) -> Any:
        return await self.request("DELETE", path, params=params or None)

    async def stream_lines(self, path: str, **params: Any) -> AsyncIterator[str]:
        """Yield lines of a streaming response (logs, events) as they arrive."""
        async for line in self._lines(self._message("GET", path, params or None, None, None)):
            yield line

    async def post_lines(self, path: str, body: Any) -> AsyncIterator[str]:
        """POST `body` as JSON and yield the lines of the answer as they arrive."""
        message = self._message("POST", path, None, json.dumps(body).encode(), "application/json")
        async for line in self._lines(message):
            yield line

    async def _lines(self, message: bytes) -> AsyncIterator[str]:
        import asyncio

        if self.blocking:
            raise RuntimeError("a blocking client cannot follow a stream")
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await self._open_async()
                writer.write(message)
                await writer.drain()
        except _FAILURES as exc:
            raise self._unreachable(exc) from None
        parts = aiter(_read_async(reader))
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    head = await anext(parts)
            except _FAILURES as exc:
                raise self._unreachable(exc) from None
            if head.status >= 400:
                try:
                    body = b"".join([part.data async for part in parts])
                except _FAILURES as exc:
                    raise self._unreachable(exc) from None
                decode(head.status, body.decode(errors="replace"))
            pending = b""
            try:
                async for part in parts:
                    pending += part.data
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line.decode(errors="replace")
            except _FAILURES as exc:
                raise self._unreachable(exc) from None
            if pending:
                yield pending.decode(errors="replace")
        finally:
            writer.close()

    async def download(
        self, path: str, write: Callable[[bytes], Any], limit: int, wait: float
    ) -> int:
        """Hand a binary answer of at most `limit` bytes to `write` as it arrives; the
        answer may take `wait` seconds to begin (the server prepares it first), and has no
        deadline once begun. Returns its size."""
        import asyncio

        if self.blocking:
            raise RuntimeError("a blocking client cannot download")
        try:
            async with asyncio.timeout(max(wait, self._timeout)):
                reader, writer = await self._open_async()
                writer.write(self._message("GET", path, None, None, None))
                await writer.drain()
                parts = aiter(_read_async(reader, limit))
                head = await anext(parts)
            try:
                if head.status >= 400:
                    body = b"".join([part.data async for part in parts])
                    decode(head.status, body.decode(errors="replace"))
                size = 0
                async for part in parts:
                    write(part.data)
                    size += len(part.data)
                return size
            finally:
                writer.close()
        except _FAILURES as exc:
            raise self._unreachable(exc) from None

    def _message(
        self,
        method: str,
        path: str,
        params: dict | None,
        data: bytes | None,
        content_type: str | None,
    ) -> bytes:
        # Names from the command line go into paths: a space or a non-ASCII letter is sent
        # percent-encoded, as a browser would, and a line break cannot end the request line.
        target = quote(self._prefix + path, safe=_PATH_SAFE)
        if method == "GET" and self._read_params:
            params = {**(params or {}), **self._read_params}
        if params:
            target += ("&" if "?" in target else "?") + urlencode(
                {k: str(v) for k, v in params.items()}
            )
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Length"] = str(len(data))
            if content_type:
                headers["Content-Type"] = content_type
        head = (
            f"{method} {target} HTTP/1.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n"
        )
        return head.encode("latin-1") + (data or b"")

    def _exchange_blocking(self, message: bytes) -> tuple[_Head, bytes]:
        if self._unix is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._timeout)
            try:
                with reachable(self._unix) as socket_file:
                    sock.connect(socket_file)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((self._host, self._port), self._timeout)
            if self._tls:
                try:
                    sock = self._tls_context().wrap_socket(sock, server_hostname=self._host)
                except BaseException:
                    sock.close()
                    raise
        with sock, sock.makefile("rb") as stream:
            sock.sendall(message)
            parts = _read_blocking(stream)
            head = next(parts)
            return head, b"".join(part.data for part in parts)

    async def _exchange_async(self, message: bytes) -> tuple[_Head, bytes]:
        import asyncio

        async with asyncio.timeout(self._timeout):
            reader, writer = await self._open_async()
            try:
                writer.write(message)
                await writer.drain()
                parts = aiter(_read_async(reader))
                head = await anext(parts)
                return head, b"".join([part.data async for part in parts])
            finally:
                writer.close()

    def _tls_context(self) -> Any:
        if self._ssl is None:
            import ssl

            # The cluster's CA, or the system's trust store.
            self._ssl = ssl.create_default_context(cafile=self._ca_file)
        return self._ssl

    async def _open_async(self):
        import asyncio

        if self._tls and self._ssl is None:
            # Loading the trust store reads files, hence the thread.
            await asyncio.to_thread(self._tls_context)
        if self._unix is not None:
            with reachable(self._unix) as socket_file:
                return await asyncio.open_unix_connection(socket_file, limit=MAX_HEADER)
        return await asyncio.open_connection(
            self._host, self._port, ssl=self._ssl if self._tls else None, limit=MAX_HEADER
        )

    def _unreachable(self, exc: BaseException) -> Unreachable:
        reason = (
            "timed out"
            if isinstance(exc, (TimeoutError, socket.timeout))
            else f"{exc.__class__.__name__} {exc}"
        )
        where = f"{UNIX_PREFIX}{self._unix}" if self._unix is not None else self.base
        return Unreachable(f"cannot reach the Shoal API at {where}: {reason}".rstrip())
