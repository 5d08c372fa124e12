"""Who may talk to the API: the node's unix socket, or a bearer token over TCP; never a web
page (Host and Origin are checked, so DNS rebinding and cross-site requests are refused).

There is no unauthenticated door: loopback is no exemption (every local user and every task
reaches loopback). Local administration goes through `DATA_DIR/shoal.sock` instead.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Callable, ContextManager, Iterable, Optional
from urllib.parse import urlsplit

from aiohttp import web

from consensus.model import Node
from consensus.nodes import nodes
from node.api.http_util import HttpError, error_response
from node.local_socket import peer_uid
from node.pki.authority import node_id_from_peercert
from node.security import NODE_HEADER, NODE_KEY_HEADER, key_matches

# Routes open without a token: a liveness probe that tells nothing secret, joining, which
# carries its own proof of the join token, and the cluster's CA certificates (public: a
# joining node pins them by the digest in its token).
_OPEN_PATHS = ("/healthz", "/v1/join", "/v1/cluster/ca")
# The dashboard's own files (GET): they hold no cluster data, and a browser cannot attach
# a bearer token to a page it navigates to; every API call the page makes carries the token.
_DASHBOARD = "/ui"


def open_without_token(request: web.Request) -> bool:
    if request.path in _OPEN_PATHS:
        return True
    return request.method == "GET" and (request.path == _DASHBOARD
                                        or request.path.startswith(_DASHBOARD + "/"))
_TOKEN_HINT = ("missing or wrong API token: pass --token or set SHOAL_TOKEN (see `shoal cluster "
               "token` on a node), or run the CLI on the node's machine as its user, where it "
               "uses the node's socket")


def host_name(host_header: str) -> str:
    """The host part of a Host header or an origin's netloc, lower-case, without the port."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def host_allowed(host_header: Optional[str], names: frozenset[str]) -> bool:
    """An IP literal or one of the node's names: a name an attacker's DNS points at this node
    (DNS rebinding) is none of these."""
    if not host_header:
        return False
    name = host_name(host_header)
    return _is_ip(name) or name in names


def origin_allowed(origin: Optional[str], host_header: Optional[str]) -> bool:
    """No Origin (the CLI, curl, other nodes), or the page is the API itself (same origin)."""
    if origin is None:
        return True
    netloc = urlsplit(origin).netloc.lower()
    return bool(netloc) and netloc == (host_header or "").strip().lower()


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


def is_local_admin(request: web.Request) -> bool:
    """The request came through the node's unix socket from root or the node's own user."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return peer_uid(sock) in (0, os.geteuid())


def peer_node_id(request: web.Request) -> str:
    """The node whose certificate the client presented over TLS ("" for none): the server
    accepts only certificates the cluster's CA signed (node.pki.contexts)."""
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    return node_id_from_peercert(peercert)


def calling_node(request: web.Request, read_state: Callable[[], ContextManager]) -> Node:
    """The node that made this call, proven by its certificate or its own key (internal
    routes): an API token alone is not a node, and one node cannot act as another."""
    certified = peer_node_id(request)
    node_id = certified or request.headers.get(NODE_HEADER, "")
    with read_state() as state:
        node = nodes(state).get(node_id)
    if certified:
        if node is None:
            raise HttpError(403, f"node {certified} of this certificate is not in the cluster",
                            NODE_HEADER)
        return node
    if node is not None and not node.key_hash:
        # Registered by a version without node keys: it registers its key as soon as it
        # runs this version, and needs these routes to do so (a follower forwards).
        return node
    if node is None or not key_matches(request.headers.get(NODE_KEY_HEADER, ""), node.key_hash):
        raise HttpError(403, "only a node of this cluster may call this, with its own key",
                        NODE_HEADER)
    return node


def guard_middleware(check_token: Callable[[str], bool], host_names: Iterable[str]):
    names = frozenset(n.lower() for n in host_names)

    @web.middleware
    async def middleware(request: web.Request, handler):
        local = is_local_admin(request)
        host = request.headers.get("Host")
        if not local and not host_allowed(host, names):
            return error_response(421, f"Host {host!r} is not an address or name of this node "
                                       "(add it with --api-host)", "Host")
        if not origin_allowed(request.headers.get("Origin"), host) or \
                request.headers.get("Sec-Fetch-Site") == "cross-site":
            return error_response(403, "cross-origin requests are refused", "Origin")
        if not local and not open_without_token(request):
            token = bearer(request)
            if not token or not check_token(token):
                return error_response(401, _TOKEN_HINT)
        return await handler(request)

    return middleware
