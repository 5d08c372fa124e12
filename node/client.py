"""The HTTP client for Shoal's API that nodes use to talk to each other (the CLI has a
lighter one with the same interface, node.cli.lean_client)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp

from node.cli.lean_client import (
    INDEX_HEADER,
    KNOWN_LEADER_HEADER,
    UNIX_PREFIX,
    ApiError,
    Unreachable,
    base_url,
    decode,
)
from node.local_socket import reachable

__all__ = [
    "ApiError",
    "INDEX_HEADER",
    "KNOWN_LEADER_HEADER",
    "ShoalClient",
    "UNIX_PREFIX",
    "Unreachable",
    "base_url",
]
# Idle pooled connections are dropped before the server's idle timeout (node.api.listen)
# closes them: a request sent on a connection the server is closing would fail.
CLIENT_KEEPALIVE = 4.0


class ShoalClient:
    def __init__(
        self,
        addr: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        headers: dict[str, str] | None = None,
        stale: bool = False,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        """`ssl_context` verifies an HTTPS server (and presents a node's certificate, between
        nodes), or makes the context that does at the first request; without it, the
        system's trust store."""
        self.base = base_url(addr)
        self._ssl = ssl_context
        self._unix = addr[len(UNIX_PREFIX) :] if addr.startswith(UNIX_PREFIX) else None
        self._paths = contextlib.ExitStack()
        # Reads answer from the asked node's copy instead of a linearizable read.
        self._read_params = {"stale": "1"} if stale else {}
        self._headers = {
            **(headers or {}),
            **({"Authorization": f"Bearer {token}"} if token else {}),
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> ShoalClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
        self._paths.close()

    async def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector: aiohttp.BaseConnector
            if self._unix is not None:
                connector = aiohttp.UnixConnector(self._paths.enter_context(reachable(self._unix)))
            elif self.base.startswith("https://"):
                # aiohttp's own default context trusts nothing in a Shoal process (see
                # node/__init__), so HTTPS without a context of the caller's gets the system's
                # CA store here; loading it reads files, hence the thread.
                trusted = self._ssl() if callable(self._ssl) else self._ssl
                trusted = trusted or await asyncio.to_thread(ssl.create_default_context)
                connector = aiohttp.TCPConnector(ssl=trusted, keepalive_timeout=CLIENT_KEEPALIVE)
            else:
                connector = aiohttp.TCPConnector(keepalive_timeout=CLIENT_KEEPALIVE)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session

    def _per_request_ssl(self) -> dict:
        """A session given by the caller has a connector of its own: the context this client
        was given goes with each request instead."""
        if self._owns_session or self._ssl is None or not self.base.startswith("https://"):
            return {}
        if callable(self._ssl):
            self._ssl = self._ssl()
        return {"ssl": self._ssl}

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
        body, _ = await self._exchange(
            method, path, json_body=json_body, data=data, params=params, content_type=content_type
        )
        return body

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        params: dict | None = None,
        content_type: str | None = None,
    ) -> tuple[Any, Mapping[str, str]]:
        headers = dict(self._headers)
        if content_type:
            headers["Content-Type"] = content_type
        if method == "GET" and self._read_params:
            params = {**(params or {}), **self._read_params}
        try:
            session = await self._sess()
            async with session.request(
                method,
                self.base + path,
                json=json_body,
                data=data,
                params=params,
                headers=headers,
                **self._per_request_ssl(),
            ) as resp:
                text = await resp.text()
                return decode(resp.status, text), resp.headers
        except (TimeoutError, aiohttp.ClientConnectionError, OSError) as exc:
            raise Unreachable(
                f"cannot reach the Shoal API at {self.base}: "
                f"{exc.__class__.__name__} {exc}".rstrip()
            ) from None

    async def get_at_index(self, path: str, **params: Any) -> tuple[Any, int]:
        """GET `path` and the index of the state it was served from (`X-Shoal-Index`)."""
        body, headers = await self._exchange(
            "GET", path, params={k: str(v) for k, v in params.items()} or None
        )
        return body, int(headers.get(INDEX_HEADER, "0"))

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request(
            "GET", path, params={k: str(v) for k, v in params.items()} or None
        )

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.request("POST", path, json_body=body)

    async def patch(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, json_body=body)

    async def delete(self, path: str, **params: Any) -> Any:
        return await self.request(
            "DELETE", path, params={k: str(v) for k, v in params.items()} or None
        )

    async def stream_chunks(
        self, path: str, params: dict[str, str], *, read_timeout: float
    ) -> AsyncIterator[bytes]:
        """Yield the body of a long-lived streaming response as it arrives; Unreachable when
        nothing arrived for `read_timeout` seconds or the connection broke."""
        try:
            session = await self._sess()
            async with session.get(
                self.base + path,
                params=params,
                headers=self._headers,
                **self._per_request_ssl(),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=read_timeout, sock_read=read_timeout
                ),
            ) as resp:
                if resp.status >= 400:
                    decode(resp.status, await resp.text())
                async for chunk in resp.content.iter_any():
                    yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise Unreachable(f"stream from {self.base}{path} broke: {exc!r}") from None

    async def stream_lines(self, path: str, **params: Any) -> AsyncIterator[str]:
        """Yield lines of a streaming response (logs, events)."""
        try:
            session = await self._sess()
            async with session.get(
                self.base + path,
                params={**params, **self._read_params},
                headers=self._headers,
                **self._per_request_ssl(),
                timeout=aiohttp.ClientTimeout(total=None),
            ) as resp:
                if resp.status >= 400:
                    decode(resp.status, await resp.text())
                async for raw in resp.content:
                    yield raw.decode(errors="replace").rstrip("\n")
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise Unreachable(f"cannot reach the Shoal API at {self.base}: {exc}") from None
