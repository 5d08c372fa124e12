"""The CLI's client for Shoal's API: HTTP/1.1 over asyncio streams, one connection a request.

The `shoal` command answers one request and exits, so what it imports is most of what it
costs: aiohttp alone takes about 0.1 s of CPU to import, several times the request itself.
This client speaks the small part of HTTP the API needs (JSON answers with a length, chunked
streams of lines) and has the interface of node.client.ShoalClient, which nodes use to talk
to each other. The errors and the decoding of answers are shared with it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Optional
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

    def __init__(self, status: int, message: str, field: Optional[str] = None) -> None:
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


# How a connection fails: refused, reset, cut short, timed out, or not HTTP.
_FAILURES = (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
             _Malformed)


class LeanClient:
    def __init__(self, addr: str, token: Optional[str] = None, *,
                 timeout: float = DEFAULT_TIMEOUT, stale: bool = False,
                 ca_file: Optional[str] = None) -> None:
        """`ca_file`: the CA bundle (PEM) an HTTPS server is verified against; without it,
        the system's trust store."""
        self.base = base_url(addr)
        self._unix = addr[len(UNIX_PREFIX):] if addr.startswith(UNIX_PREFIX) else None
        parts = urlsplit(self.base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Unreachable(f"cannot use {addr!r} as an API address: expected "
                              f"http://HOST:PORT or https://HOST:PORT")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        try:
            self._port = parts.port or (443 if self._tls else 80)
        except ValueError:
            raise Unreachable(f"cannot use {addr!r} as an API address: bad port") from None
        self._prefix = parts.path
        self._headers = {"Host": parts.netloc, "Accept": "application/json",
                         "Connection": "close", "User-Agent": "shoal-cli"}
        if token:
            if not token.isascii() or not token.isprintable():
                raise Unreachable("the API token holds characters an HTTP header cannot carry")
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout
        self._ssl: Any = None
        self._ca_file = ca_file
        # Reads answer from the asked node's copy instead of a linearizable read.
        self._read_params = {"stale": "1"} if stale else {}

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    async def close(self) -> None:
        return None

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      data: Optional[bytes] = None, params: Optional[dict] = None,
                      content_type: Optional[str] = None) -> Any:
        if json_body is not None:
            data, content_type = json.dumps(json_body).encode(), "application/json"
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await self._send(method, path, params, data, content_type)
                try:
                    status, headers = await _read_head(reader)
                    body = b"".join([chunk async for chunk in _body(reader, headers)])
                finally:
                    writer.close()
        except _FAILURES as exc:
            raise self._unreachable(exc) from None
        return decode(status, body.decode(errors="replace"))

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params or None)

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.request("POST", path, json_body=body)

    async def patch(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, json_body=body)

    async def delete(self, path: str, **params: Any) -> Any:
        return await self.request("DELETE", path, params=params or None)

    async def stream_lines(self, path: str, **params: Any) -> AsyncIterator[str]:
        """Yield lines of a streaming response (logs, events) as they arrive."""
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await self._send("GET", path, params or None, None, None)
        except _FAILURES as exc:
            raise self._unreachable(exc) from None
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    status, headers = await _read_head(reader)
            except _FAILURES as exc:
                raise self._unreachable(exc) from None
            if status >= 400:
                try:
                    body = b"".join([chunk async for chunk in _body(reader, headers)])
                except _FAILURES as exc:
                    raise self._unreachable(exc) from None
                decode(status, body.decode(errors="replace"))
            pending = b""
            try:
                async for chunk in _body(reader, headers):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line.decode(errors="replace")
            except _FAILURES as exc:
                raise self._unreachable(exc) from None
            if pending:
                yield pending.decode(errors="replace")
        finally:
            writer.close()

    async def _send(self, method: str, path: str, params: Optional[dict], data: Optional[bytes],
                    content_type: Optional[str]):
        if self._tls and self._ssl is None:
            import ssl

            # The cluster's CA, or the system's trust store; loading either reads files,
            # hence the thread.
            self._ssl = await asyncio.to_thread(ssl.create_default_context, cafile=self._ca_file)
        if self._unix is not None:
            with reachable(self._unix) as socket_file:
                reader, writer = await asyncio.open_unix_connection(socket_file, limit=MAX_HEADER)
        else:
            reader, writer = await asyncio.open_connection(
                self._host, self._port, ssl=self._ssl if self._tls else None, limit=MAX_HEADER)
        # Names from the command line go into paths: a space or a non-ASCII letter is sent
        # percent-encoded, as a browser would, and a line break cannot end the request line.
        target = quote(self._prefix + path, safe=_PATH_SAFE)
        if method == "GET" and self._read_params:
            params = {**(params or {}), **self._read_params}
        if params:
            target += ("&" if "?" in target else "?") + urlencode(
                {k: str(v) for k, v in params.items()})
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Length"] = str(len(data))
            if content_type:
                headers["Content-Type"] = content_type
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode("latin-1") + (data or b""))
        await writer.drain()
        return reader, writer

    def _unreachable(self, exc: BaseException) -> Unreachable:
        reason = "timed out" if isinstance(exc, TimeoutError) else f"{exc.__class__.__name__} {exc}"
        where = f"{UNIX_PREFIX}{self._unix}" if self._unix is not None else self.base
        return Unreachable(f"cannot reach the Shoal API at {where}: {reason}".rstrip())


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _Malformed(f"response headers over {MAX_HEADER} bytes") from None
    status_line, *lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise _Malformed(f"not an HTTP answer: {status_line[:80]!r}")
    headers = {}
    for line in filter(None, lines):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(code), headers


async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive: by Content-Length, chunked, or up to the close."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _Malformed(f"bad chunk size {size_line[:40]!r}") from None
            total += size
            if size < 0 or total > MAX_BODY:
                raise _Malformed(f"answer over {MAX_BODY} bytes")
            if size == 0:
                return
            chunk = await reader.readexactly(size)
            await reader.readexactly(2)
            yield chunk
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise _Malformed(f"bad Content-Length {headers['content-length'][:40]!r}") from None
        if not 0 <= length <= MAX_BODY:
            raise _Malformed(f"answer over {MAX_BODY} bytes")
        if length:
            yield await reader.readexactly(length)
    else:
        total = 0
        while chunk := await reader.read(65536):
            total += len(chunk)
            if total > MAX_BODY:
                raise _Malformed(f"answer over {MAX_BODY} bytes")
            yield chunk
