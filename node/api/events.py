"""`GET /v1/events`: this node's cluster events as Server-Sent Events (node.loops.event_feed).

Query: `since=SEQ` (or the Last-Event-ID header) replays the kept events after SEQ first;
`service=NAME` keeps only that service's events; `follow=0` ends the stream after the
replay. Each event is `id: SEQ`, `event: TYPE` and `data: {json}`; a comment line every
KEEPALIVE seconds keeps idle connections open through proxies. A client too slow to read
is dropped: its stream ends with an `event: dropped`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from aiohttp import web

from consensus.wire import to_plain
from node.api.context import NODE
from node.api.http_util import HttpError, parse_count
from node.loops.event_feed import Numbered

routes = web.RouteTableDef()

KEEPALIVE = 15.0


def _number(query: Mapping[str, str], headers: Mapping[str, str]) -> int:
    raw = query.get("since", headers.get("Last-Event-ID", "0"))
    return parse_count(raw, "since", "an event number")


def _follow(query: Mapping[str, str]) -> bool:
    raw = query.get("follow", "1").lower()
    if raw not in ("0", "1", "true", "false", "yes", "no"):
        raise HttpError(400, f"must be 1 or 0, not {raw!r}", "follow")
    return raw in ("1", "true", "yes")


def sse(item: Numbered) -> bytes:
    data = json.dumps({"seq": item.seq, **to_plain(item.event)}, separators=(",", ":"))
    return f"id: {item.seq}\nevent: {item.event.type}\ndata: {data}\n\n".encode()


@routes.get("/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[NODE].events.hub
    since, follow = _number(request.query, request.headers), _follow(request.query)
    service = request.query.get("service", "")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    # Subscribe before reading the history, so nothing falls between the two.
    sub = hub.subscribe()
    try:
        last = since
        for item in hub.since(since):
            if not service or item.event.service == service:
                await response.write(sse(item))
            last = item.seq
        while follow:
            try:
                item = await asyncio.wait_for(sub.next(), KEEPALIVE)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if item is None:
                await response.write(b'event: dropped\ndata: {"reason":"too slow"}\n\n')
                break
            if item.seq > last and (not service or item.event.service == service):
                await response.write(sse(item))
    finally:
        hub.unsubscribe(sub)
    return response
