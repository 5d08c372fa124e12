"""The web dashboard at `/ui`: one page, a script and a style sheet from the package
(node/dashboard, no build step, nothing fetched from elsewhere), served behind the same
middlewares as the API it reads."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path

from aiohttp import web

from node.api.http_util import HttpError

routes = web.RouteTableDef()
ASSETS = Path(__file__).resolve().parent.parent / "dashboard"
# Every file the page may load, with its type: a name not listed here is a 404, so no path
# from a request ever reaches the file system.
FILES = {"index.html": "text/html", "app.js": "application/javascript", "style.css": "text/css"}
# The page loads only its own files and talks only to the node that served it.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


async def _file(name: str) -> web.Response:
    body = await asyncio.to_thread(_read, name)
    return web.Response(body=body, content_type=FILES[name], charset="utf-8", headers=HEADERS)


@routes.get("/ui")
async def page(_request: web.Request) -> web.Response:
    return await _file("index.html")


@routes.get("/ui/{file}")
async def asset(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    if name not in FILES:
        raise HttpError(404, f"no dashboard file {name!r}", "file")
    return await _file(name)
