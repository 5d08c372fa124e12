"""HTTP API: the endpoint table as this node sees it, and what its routing mesh serves."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from consensus.nodes import nodes
from netoverlay.lb.types import Backend
from node.api.context import NODE, NodeContext
from node.api.http_util import HttpError
from node.api.services import find_service
from node.mesh import MeshView

routes = web.RouteTableDef()


def host_port(address: str, port: int) -> str:
    return (
        f"[{address}]:{port}" if ipaddress.ip_address(address).version == 6 else f"{address}:{port}"
    )


def endpoint_json(endpoint: Backend, node_names: dict[str, str]) -> dict:
    return {
        "task_id": endpoint.task_id,
        "node_id": endpoint.node_id,
        "node_name": node_names.get(endpoint.node_id, ""),
        "address": endpoint.address,
        "port": endpoint.port,
        "endpoint": host_port(endpoint.address, endpoint.port),
        "target_port": endpoint.target_port,
        "weight": endpoint.weight,
    }


def service_endpoints_json(view: MeshView, service: str, node_names: dict[str, str]) -> dict:
    """A service's published ports (ingress ones with every address they listen on) and its
    healthy endpoints, from one view of the table."""
    ports = [
        {
            "published": p.published_port,
            "target": p.target_port,
            "protocol": p.protocol,
            "mode": p.mode,
            "addresses": list(view.ingress_addresses) if p.mode == "ingress" else [],
        }
        for p in view.ports
        if p.service == service
    ]
    return {
        "service": service,
        "ports": ports,
        "endpoints": [endpoint_json(e, node_names) for e in view.endpoints.get(service, ())],
    }


@routes.get("/v1/services/{ref}/endpoints")
async def service_endpoints(request: web.Request) -> web.Response:
    shoal: NodeContext = request.app[NODE]
    ref = request.match_info["ref"]
    with shoal.store.view() as state:
        service = find_service(state, ref)
        node_names = {n.id: n.name for n in nodes(state).values()}
    name = service.name if service is not None else ref
    view = shoal.mesh.view()
    # A service this replica does not know yet may already have endpoints in the table.
    if service is None and name not in view.endpoints:
        raise HttpError(404, f"no such service {ref!r}", "service")
    return web.json_response(service_endpoints_json(view, name, node_names))


@routes.get("/v1/mesh")
async def mesh_status(request: web.Request) -> web.Response:
    shoal: NodeContext = request.app[NODE]
    return web.json_response(shoal.mesh.status())
