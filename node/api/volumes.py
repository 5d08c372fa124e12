"""HTTP API: `GET /v1/volumes`, the named volumes the cluster's services mount and the nodes
holding their data (where tasks mounting them were placed), read from the local state."""

from __future__ import annotations

from aiohttp import web

from consensus.nodes import nodes
from consensus.tasks import services, tasks
from consensus.volumes import volume_table
from consensus.wire import to_plain
from node.api.context import NODE

routes = web.RouteTableDef()


@routes.get("/v1/volumes")
async def list_volumes(request: web.Request) -> web.Response:
    with request.app[NODE].store.view() as state:
        table = volume_table(services(state), tasks(state).values(), nodes(state))
    return web.json_response([to_plain(use) for use in table])
