"""The HTTP client for Shoal's API: used by the CLI and by nodes talking to each other."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any, AsyncIterator, Mapping, Optional

import aiohttp

# Every answer says from which state it was served (the applied count a blocking query
# passes back as `index`) and whether the node knows a leader; see node.consistency.
INDEX_HEADER = "X-Shoal-Index"
KNOWN_LEADER_HEADER = "X-Shoal-Known-Leader"


class ApiError(Exception):
    """The API answered with an error status."""

    def __init__(self, status: int, message: str, field: Optional[str] = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.status = status
        self.message = message
        self.field = field


class Unreachable(Exception):
    """No answer from the API at all."""


def base_url(addr: str) -> str:
    addr = addr.rstrip("/")
    return addr if "://" in addr else f"http://{addr}"


class ShoalClient:
    def __init__(self, addr: str, token: Optional[str] = None, *, timeout: float = 10.0,
                 session: Optional[aiohttp.ClientSession] = None, stale: bool = False) -> None:
        self.base = base_url(addr)
        # Reads answer from the asked node's copy instead of a linearizable read.
        self._read_params = {"stale": "1"} if stale else {}
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
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

    async def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = None
            if self.base.startswith("https://"):
                # aiohttp's own default context trusts nothing in a Shoal process (see
                # node/__init__), so HTTPS gets the system's CA store here; loading it reads
                # files, hence the thread.
                trusted = await asyncio.to_thread(ssl.create_default_context)
                connector = aiohttp.TCPConnector(ssl=trusted)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      data: Optional[bytes] = None, params: Optional[dict] = None,
                      content_type: Optional[str] = None) -> Any:
        body, _ = await self._exchange(method, path, json_body=json_body, data=data,
                                       params=params, content_type=content_type)
        return body

    async def _exchange(self, method: str, path: str, *, json_body: Any = None,
                        data: Optional[bytes] = None, params: Optional[dict] = None,
                        content_type: Optional[str] = None) -> tuple[Any, Mapping[str, str]]:
        headers = dict(self._headers)
        if content_type:
            headers["Content-Type"] = content_type
        if method == "GET" and self._read_params:
            params = {**(params or {}), **self._read_params}
        try:
            session = await self._sess()
            async with session.request(method, self.base + path, json=json_body, data=data,
                                       params=params, headers=headers) as resp:
                text = await resp.text()
                return _decode(resp.status, text), resp.headers
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError, OSError) as exc:
            raise Unreachable(f"cannot reach the Shoal API at {self.base}: "
                              f"{exc.__class__.__name__} {exc}".rstrip()) from None

    async def get_at_index(self, path: str, **params: Any) -> tuple[Any, int]:
        """GET `path` and the index of the state it was served from (`X-Shoal-Index`)."""
        body, headers = await self._exchange(
            "GET", path, params={k: str(v) for k, v in params.items()} or None)
        return body, int(headers.get(INDEX_HEADER, "0"))

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params={k: str(v) for k, v in params.items()} or None)

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.request("POST", path, json_body=body)

    async def patch(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, json_body=body)

    async def delete(self, path: str, **params: Any) -> Any:
        return await self.request("DELETE", path, params={k: str(v) for k, v in params.items()} or None)

    async def stream_lines(self, path: str, **params: Any) -> AsyncIterator[str]:
        """Yield lines of a streaming response (logs, events)."""
        try:
            session = await self._sess()
            async with session.get(self.base + path, params={**params, **self._read_params},
                                   headers=self._headers,
                                   timeout=aiohttp.ClientTimeout(total=None)) as resp:
                if resp.status >= 400:
                    _decode(resp.status, await resp.text())
                async for raw in resp.content:
                    yield raw.decode(errors="replace").rstrip("\n")
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise Unreachable(f"cannot reach the Shoal API at {self.base}: {exc}") from None


def _decode(status: int, text: str) -> Any:
    try:
        body = json.loads(text) if text else None
    except json.JSONDecodeError:
        body = None
    if status >= 400:
        if isinstance(body, dict) and "error" in body:
            raise ApiError(status, str(body["error"]), body.get("field"))
        raise ApiError(status, text.strip() or f"HTTP {status}")
    return body
