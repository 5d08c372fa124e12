"""Who may talk to the API: the node's unix socket, or a bearer token over TCP; never a web
page (Host and Origin are checked, so DNS rebinding and cross-site requests are refused).
What each caller may do is node.api.acl's table; writes are audited (audit_middleware).

There is no unauthenticated door: loopback is no exemption (every local user and every task
reaches loopback). Local administration goes through `DATA_DIR/shoal.sock` instead.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from consensus.audit import AuditEntry
from consensus.model import Node
from consensus.nodes import nodes
from consensus.raft import ProposeError
from consensus.tokens import ApiToken, tokens
from node.api.acl import PRINCIPAL, RESOURCE, Principal, Rule, outside_scope, refusal, rule_of
from node.api.catch_up import stale_allowed
from node.api.consistency import CONFIRMED_INDEX, Replica
from node.api.http_util import HttpError, error_response
from node.api.services import find_service
from node.local_socket import peer_uid
from node.pki.authority import node_id_from_peercert
from node.security import NODE_HEADER, NODE_KEY_HEADER, key_matches, user_token_id

# The node's own user (or root) on its unix socket administers it.
LOCAL = Principal("local", "admin")
_TOKEN_HINT = (
    "missing or wrong API token: pass --token or set SHOAL_TOKEN (see `shoal cluster "
    "token` on a node), or run the CLI on the node's machine as its user, where it "
    "uses the node's socket"
)


def host_name(host_header: str) -> str:
    """The host part of a Host header or an origin's netloc, lower-case, without the port."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@functools.lru_cache(maxsize=256)  # every request's Host header; bounded, so any header will do
def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def host_allowed(host_header: str | None, names: frozenset[str]) -> bool:
    """An IP literal or one of the node's names: a name an attacker's DNS points at this node
    (DNS rebinding) is none of these."""
    if not host_header:
        return False
    name = host_name(host_header)
    return _is_ip(name) or name in names


def origin_allowed(origin: str | None, host_header: str | None) -> bool:
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


def calling_node(
    request: web.Request, read_state: Callable[[], AbstractContextManager[Any]]
) -> Node:
    """The node that made this call, proven by its certificate or its own key (internal
    routes): an API token alone is not a node, and one node cannot act as another."""
    certified = peer_node_id(request)
    node_id = certified or request.headers.get(NODE_HEADER, "")
    with read_state() as state:
        node = nodes(state).get(node_id)
    if certified:
        if node is None:
            raise HttpError(
                403, f"node {certified} of this certificate is not in the cluster", NODE_HEADER
            )
        return node
    if node is not None and not node.key_hash:
        # Registered by a version without node keys: it registers its key as soon as it
        # runs this version, and needs these routes to do so (a follower forwards).
        return node
    if node is None or not key_matches(request.headers.get(NODE_KEY_HEADER, ""), node.key_hash):
        raise HttpError(
            403, "only a node of this cluster may call this, with its own key", NODE_HEADER
        )
    return node


# How long confirming a scoped token against the cluster's latest state may take.
CONFIRM_TIMEOUT = 5.0


class Authenticator:
    """Who a request over TCP comes from: a scoped token (checked against the cluster's
    latest state, so a revocation committed anywhere holds here at once), or the cluster's
    API token (admin), from a node when its own key comes with it."""

    def __init__(
        self,
        check_token: Callable[[str], bool],
        read_state: Callable[[], AbstractContextManager[Any]],
        replica: Replica,
    ) -> None:
        self._check_token = check_token
        self._read_state = read_state
        self._replica = replica

    async def principal(self, request: web.Request) -> Principal:
        token = bearer(request)
        token_id = user_token_id(token)
        if token_id:
            return await self._scoped(request, token, token_id)
        if not token or not self._check_token(token):
            raise HttpError(401, _TOKEN_HINT)
        node = self._node(request)
        return (
            Principal(f"node {node.name}", "admin", node=True)
            if node
            else Principal("cluster-token", "admin")
        )

    def _node(self, request: web.Request) -> Node | None:
        node_id = request.headers.get(NODE_HEADER)
        if not node_id:
            return None
        with self._read_state() as state:
            node = nodes(state).get(node_id)
        if node is None or not key_matches(request.headers.get(NODE_KEY_HEADER, ""), node.key_hash):
            return None
        return node

    def _row(self, token_id: str) -> ApiToken | None:
        with self._read_state() as state:
            return tokens(state).get(token_id)

    async def _scoped(self, request: web.Request, token: str, token_id: str) -> Principal:
        known = self._row(token_id)
        if known is not None and not key_matches(token, known.secret_hash):
            raise HttpError(401, "wrong secret for this token")
        if not (request.method == "GET" and stale_allowed(request)):
            # The row this node holds may be revoked already (or created just now) by a
            # command it has not applied: confirm against a read index, as a read does.
            try:
                index = await self._replica.read_index(CONFIRM_TIMEOUT)
                if not await self._replica.wait_applied(index, CONFIRM_TIMEOUT):
                    raise ProposeError(f"this node did not apply index {index} in time")
            except ProposeError as exc:
                raise HttpError(
                    503,
                    f"cannot confirm the token against the cluster's state: "
                    f"{exc}; retry, or ask another node",
                ) from None
            request[CONFIRMED_INDEX] = index
        row = self._row(token_id)
        if row is None or not key_matches(token, row.secret_hash):
            raise HttpError(
                401, "unknown or revoked token: ask an admin for a new one (`shoal token ls`)"
            )
        if row.expired(time.time()):
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.expires_at))
            raise HttpError(401, f"token {row.name} expired at {when}")
        return Principal(f"token {row.name} ({row.id})", row.role, row.services, row.id)

    def scope(self, request: web.Request, principal: Principal, rule: Rule, template: str) -> None:
        """403 unless a token limited to some services acts on one of them; notes the
        service a route names for the audit trail."""
        if rule.service_in == "path":
            ref = request.match_info.get("ref") or request.match_info.get("name", "")
            name = ref
            if "{ref}" in template:  # a service or job, by name or id
                with self._read_state() as state:
                    service = find_service(state, ref)
                name = service.name if service is not None else ref
            request[RESOURCE] = name
            if not principal.covers(name):
                raise HttpError(403, outside_scope(principal, name))
        elif rule.service_in == "" and principal.services and rule.permission == "write":
            raise HttpError(
                403,
                f"{request.method} {template} acts on no single service: "
                f"{principal.who} is limited to services matching "
                f"{principal.services!r}",
            )


def guard_middleware(authenticator: Authenticator, host_names: Iterable[str]):
    names = frozenset(n.lower() for n in host_names)

    @web.middleware
    async def middleware(request: web.Request, handler):
        local = is_local_admin(request)
        host = request.headers.get("Host")
        if not local and not host_allowed(host, names):
            return error_response(
                421,
                f"Host {host!r} is not an address or name of this node (add it with --api-host)",
                "Host",
            )
        if (
            not origin_allowed(request.headers.get("Origin"), host)
            or request.headers.get("Sec-Fetch-Site") == "cross-site"
        ):
            return error_response(403, "cross-origin requests are refused", "Origin")
        template, rule = rule_of(request)
        if rule.permission == "open":
            return await handler(request)
        principal = LOCAL if local else await authenticator.principal(request)
        request[PRINCIPAL] = principal
        if template is not None:
            if not principal.may(rule.permission):
                raise HttpError(
                    403,
                    refusal(principal, rule.permission, request.method, template),
                    "Authorization",
                )
            authenticator.scope(request, principal, rule, template)
        return await handler(request)

    return middleware


def audit_middleware(record: Callable[[AuditEntry], None]):
    """After the answer: a write by a user (not a node's own traffic) goes to the audit
    trail with who made it, what it named and the status it got; never a body."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except BaseException:
            status = 500
            raise
        finally:
            principal = request.get(PRINCIPAL)
            if principal is not None and not principal.node and request.method in _WRITES:
                template, rule = rule_of(request)
                if rule.permission in ("write", "admin"):
                    resource = request.get(RESOURCE) or _named(request)
                    record(
                        AuditEntry(
                            time.time(),
                            principal.who,
                            principal.role,
                            request.method,
                            request.path,
                            status,
                            resource,
                            resource if rule.service_in else "",
                        )
                    )

    return middleware


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _named(request: web.Request) -> str:
    info = request.match_info
    return info.get("ref") or info.get("name") or info.get("id") or ""
