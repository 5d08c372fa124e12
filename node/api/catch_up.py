"""A node that does not hold the cluster's state yet says so instead of answering from it.

A node that joined and is still receiving the leader's snapshot, or restarted with an old
journal and has not heard from a leader, would answer reads from an empty or old state and
forward writes whose effect it cannot show. Until its replica has caught up
(`RaftNode.progress`), the API answers 503 with how far behind it is, except for the routes
that describe the node itself or that other nodes need to bring it into the cluster. A
caller that accepts an old answer asks with `?stale=1`.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from consensus.raft import SyncProgress
from node.api.http_util import error_response

# Served whatever the node holds: its own health and Raft view, a join (forwarded to the
# leader), and the calls the leader makes to change this node's role or remove it.
ALWAYS_SERVED = frozenset(
    {
        "/healthz",
        "/v1/cluster",
        "/v1/cluster/ca",
        "/v1/join",
        "/v1/internal/raft-role",
        "/v1/internal/removed",
        "/v1/internal/propose",
    }
)
# Built from gossip and the routing mesh, which start only once the node has caught up.
_NOT_BEFORE_CAUGHT_UP = ("/v1/mesh", "/v1/cluster/members")


def stale_allowed(request: web.Request) -> bool:
    return request.query.get("stale", "").lower() in ("1", "true", "yes")


def catch_up_middleware(progress: Callable[[], SyncProgress], node_name: str):
    @web.middleware
    async def middleware(request: web.Request, handler):
        path = request.path
        if path in ALWAYS_SERVED:
            return await handler(request)
        state = progress()
        if state.caught_up:
            return await handler(request)
        if (
            request.method == "GET"
            and stale_allowed(request)
            and not path.startswith(_NOT_BEFORE_CAUGHT_UP)
            and not path.endswith("/endpoints")
        ):
            return await handler(request)
        response = error_response(
            503,
            f"node {node_name} does not hold the cluster's state yet ({state.describe()}); "
            f"ask another node, retry later, or add ?stale=1 to a read to accept an old "
            f"answer",
        )
        response.headers["Retry-After"] = "1"
        return response

    return middleware
