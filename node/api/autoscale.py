"""`GET /v1/services/{ref}/autoscale`: a service's autoscaling as this node's replica sees it
now: the policy, the load per replica from the fresh reports, what the autoscaler would decide
and why, its last change, and each node's latest sample."""

from __future__ import annotations

import time

from aiohttp import web

from consensus.metrics import node_metrics
from consensus.nodes import nodes
from consensus.tasks import tasks_of
from consensus.wire import to_plain
from node.api.context import NODE
from node.api.http_util import HttpError
from node.api.services import find_service
from node.loops.metrics_reporter import STALE_INTERVALS
from scheduler.autoscale import evaluate

routes = web.RouteTableDef()


@routes.get("/v1/services/{ref}/autoscale")
async def autoscale_status(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    ref = request.match_info["ref"]
    max_age = STALE_INTERVALS * shoal.config.metrics_interval
    with shoal.store.view() as state:
        service = find_service(state, ref)
        if service is None:
            raise HttpError(404, f"no such service {ref!r}")
        own = tasks_of(state, service.name)
        rows = list(node_metrics(state).values())
        names = {n.id: n.name for n in nodes(state).values()}
    if service.spec.autoscale is None:
        raise HttpError(404, f"service {service.name!r} has no autoscale policy", "autoscale")
    now = time.time()
    (decision,) = evaluate({service.name: service}, own, rows, now, max_age)
    samples = [
        {
            "node_id": row.node_id,
            "node_name": names.get(row.node_id, ""),
            "at": row.at,
            "age": round(now - row.at, 1),
            "fresh": now - row.at <= max_age,
            **to_plain(s),
        }
        for row in rows
        for s in row.samples
        if s.service_id == service.id
    ]
    return web.json_response(
        {
            "service": service.name,
            "policy": to_plain(service.spec.autoscale),
            "decision": to_plain(decision),
            "last": to_plain(service.autoscaled) if service.autoscaled else None,
            "samples": sorted(samples, key=lambda s: s["node_name"]),
        }
    )
