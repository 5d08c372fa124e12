"""HTTP API: the node's Prometheus metrics (node.telemetry), behind the same auth as every
route (Prometheus sends the API token with `authorization` in its scrape config)."""

from __future__ import annotations

from aiohttp import web

from node.api.context import NODE

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[NODE].telemetry.render(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})
