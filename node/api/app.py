"""The API's aiohttp application: its middlewares, in the order a request meets them, and
the routes of every resource module."""

from __future__ import annotations

from aiohttp import web

from node.api import consistency
from node.api.autoscale import routes as autoscale_routes
from node.api.catch_up import catch_up_middleware
from node.api.cluster import routes as cluster_routes
from node.api.context import NODE, NodeContext
from node.api.crons import routes as cron_routes
from node.api.dashboard import routes as dashboard_routes
from node.api.events import routes as event_routes
from node.api.gossip_keys import routes as gossip_key_routes
from node.api.guard import Authenticator, audit_middleware, guard_middleware
from node.api.http_util import errors_middleware
from node.api.jobs import routes as job_routes
from node.api.mesh import routes as mesh_routes
from node.api.metrics import routes as metrics_routes
from node.api.networks import routes as network_routes
from node.api.openapi import routes as openapi_routes
from node.api.secrets import routes as secret_routes
from node.api.services import routes as service_routes
from node.api.tasks import routes as task_routes
from node.api.tokens import routes as token_routes
from node.api.volumes import routes as volume_routes
from node.feed.serve import routes as feed_routes

# Bodies above this are refused (413) before a handler reads them.
MAX_BODY_BYTES = 4 * 1024 * 1024
# Every route the API serves; each has its permission in node.api.acl.ROUTES.
ROUTE_TABLES = (
    cluster_routes,
    gossip_key_routes,
    service_routes,
    mesh_routes,
    task_routes,
    volume_routes,
    event_routes,
    autoscale_routes,
    secret_routes,
    metrics_routes,
    openapi_routes,
    dashboard_routes,
    network_routes,
    job_routes,
    cron_routes,
    token_routes,
    feed_routes,
)


def build_app(node: NodeContext) -> web.Application:
    authenticator = Authenticator(node.keys.check_api_token, node.store.view, node.raft)
    app = web.Application(
        middlewares=[
            node.telemetry.middleware(),
            audit_middleware(node.audit.record),
            errors_middleware,
            guard_middleware(authenticator, node.config.host_names),
            catch_up_middleware(node.raft.progress, node.config.name),
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    consistency.install(app, node.raft)
    app[NODE] = node
    for routes in ROUTE_TABLES:
        app.add_routes(routes)
    return app
