"""What each route needs, and who a request comes from: the API's authorization as data.

Every route has a row in ROUTES (a test fails on a route without one, so a new route cannot
be added without deciding). A permission needs a role:

- `open`: nobody (a liveness probe, a join that carries its own proof, the dashboard's files);
- `read`: a `read-only` token or more: the GET routes, except the tokens;
- `write`: an `operator` token or more: services, jobs, cron jobs, secrets, configs,
  networks and applying files;
- `admin`: an `admin` token, the cluster's API token or the node's unix socket: nodes, the
  join and API tokens, scoped tokens;
- `node`: a node of the cluster with its own key, never a user's token (internal routes).

An operator token may be limited to the services a glob matches; on a write whose route
names a service (`service_in`) it acts only on matching ones, and it is refused the writes
that name no service (secrets, networks, whole files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from consensus.services import ServiceSpec
from consensus.tokens import ROLES, Role, glob_covers
from node.api.http_util import HttpError

Permission = Literal["open", "read", "write", "admin", "node"]
NEEDS: dict[Permission, Role] = {"read": "read-only", "write": "operator", "admin": "admin"}


@dataclass(frozen=True, slots=True)
class Rule:
    permission: Permission
    # Where a write names the service it acts on, for a token limited to some services:
    # "path" (the route's last parameter: a service or job by name or id, a cron job by
    # name), "body" (the handler checks the name it creates with `claim_service`); "" none.
    service_in: Literal["", "path", "body"] = ""


_READ, _WRITE, _ADMIN, _NODE, _OPEN = (
    Rule("read"),
    Rule("write"),
    Rule("admin"),
    Rule("node"),
    Rule("open"),
)
_BY_PATH, _BY_BODY = Rule("write", "path"), Rule("write", "body")

ROUTES: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): _OPEN,
    ("POST", "/v1/join"): _OPEN,
    ("GET", "/ui"): _OPEN,
    ("GET", "/ui/{file}"): _OPEN,
    ("GET", "/metrics"): _READ,
    ("GET", "/v1/openapi.json"): _READ,
    ("GET", "/v1/cluster"): _READ,
    ("GET", "/v1/cluster/members"): _READ,
    ("GET", "/v1/cluster/token"): _ADMIN,  # both tokens give admin
    ("GET", "/v1/cluster/snapshot"): _ADMIN,  # the whole state, secrets sealed
    ("POST", "/v1/cluster/token/rotate"): _ADMIN,
    ("GET", "/v1/cluster/recovery-key"): _ADMIN,  # opens every snapshot of the cluster
    ("POST", "/v1/cluster/ca/rotate"): _ADMIN,
    ("GET", "/v1/cluster/gossip-keys"): _READ,  # key ids, never a key
    ("POST", "/v1/cluster/gossip-keys/rotate"): _ADMIN,
    # Public: a joining node pins these by the digest in its token.
    ("GET", "/v1/cluster/ca"): _OPEN,
    ("GET", "/v1/nodes"): _READ,
    ("GET", "/v1/nodes/{ref}"): _READ,
    ("PATCH", "/v1/nodes/{ref}"): _ADMIN,
    ("DELETE", "/v1/nodes/{ref}"): _ADMIN,
    ("POST", "/v1/nodes/{ref}/promote"): _ADMIN,
    ("POST", "/v1/nodes/{ref}/demote"): _ADMIN,
    ("POST", "/v1/internal/propose"): _NODE,
    ("POST", "/v1/internal/raft-role"): _NODE,
    ("POST", "/v1/internal/removed"): _NODE,
    ("POST", "/v1/internal/certificate"): _NODE,
    ("GET", "/v1/internal/feed"): _NODE,
    ("GET", "/v1/internal/read-index"): _NODE,
    ("GET", "/v1/services"): _READ,
    ("POST", "/v1/services"): _BY_BODY,
    ("GET", "/v1/services/{ref}"): _READ,
    ("PATCH", "/v1/services/{ref}"): _BY_PATH,
    ("DELETE", "/v1/services/{ref}"): _BY_PATH,
    ("POST", "/v1/services/{ref}/rollback"): _BY_PATH,
    ("POST", "/v1/services/{ref}/promote"): _BY_PATH,
    ("POST", "/v1/services/{ref}/rebalance"): _BY_PATH,
    ("GET", "/v1/services/{ref}/autoscale"): _READ,
    ("GET", "/v1/services/{ref}/endpoints"): _READ,
    ("POST", "/v1/apply"): _WRITE,
    ("GET", "/v1/jobs"): _READ,
    ("POST", "/v1/jobs"): _BY_BODY,
    ("GET", "/v1/jobs/{ref}"): _READ,
    ("DELETE", "/v1/jobs/{ref}"): _BY_PATH,
    ("GET", "/v1/crons"): _READ,
    ("POST", "/v1/crons"): _BY_BODY,
    ("GET", "/v1/crons/{name}"): _READ,
    ("DELETE", "/v1/crons/{name}"): _BY_PATH,
    ("GET", "/v1/networks"): _READ,
    ("POST", "/v1/networks"): _WRITE,
    ("GET", "/v1/networks/{name}"): _READ,
    ("DELETE", "/v1/networks/{name}"): _WRITE,
    ("POST", "/v1/networks/{name}/rotate-key"): _WRITE,
    ("GET", "/v1/overlay"): _READ,
    ("GET", "/v1/tasks"): _READ,
    ("GET", "/v1/tasks/{id}/logs"): _READ,
    ("GET", "/v1/events"): _READ,
    ("GET", "/v1/volumes"): _READ,
    ("GET", "/v1/mesh"): _READ,
    ("GET", "/v1/secrets"): _READ,  # names and sizes; the API never serves a secret's content
    ("POST", "/v1/secrets"): _WRITE,
    ("GET", "/v1/secrets/{name}"): _READ,
    ("DELETE", "/v1/secrets/{name}"): _WRITE,
    ("GET", "/v1/configs"): _READ,
    ("POST", "/v1/configs"): _WRITE,
    ("GET", "/v1/configs/{name}"): _READ,
    ("DELETE", "/v1/configs/{name}"): _WRITE,
    ("GET", "/v1/tokens"): _ADMIN,
    ("POST", "/v1/tokens"): _ADMIN,
    ("DELETE", "/v1/tokens/{ref}"): _ADMIN,
}

# A path parameter that can only be one of a few words (`{plural:secrets|configs}`).
_PARAM = re.compile(r"\(\?P<(\w+)>([^)]*)\)")
_WORDS = re.compile(r"^[\w-]+(\|[\w-]+)*$")


def _word_params(resource: web.AbstractResource) -> list[tuple[str, list[str]]]:
    pattern = resource.get_info().get("pattern")
    return [
        (name, regex.split("|"))
        for name, regex in _PARAM.findall(pattern.pattern if pattern is not None else "")
        if _WORDS.match(regex)
    ]


def templates_of(resource: web.AbstractResource) -> list[str]:
    """The path templates a resource serves: one per word of a word-choice parameter."""
    templates = [resource.canonical]
    for name, words in _word_params(resource):
        templates = [t.replace(f"{{{name}}}", word) for t in templates for word in words]
    return templates


def template_of(request: web.Request) -> str | None:
    """The template of the route a request matched, a word parameter filled in; None when
    it matched none (aiohttp answers 404 or 405)."""
    resource = getattr(request.match_info.route, "resource", None)
    if resource is None:
        return None
    template = resource.canonical
    for name, _words in _word_params(resource):
        template = template.replace(f"{{{name}}}", request.match_info[name])
    return template


def rule_of(request: web.Request) -> tuple[str | None, Rule]:
    """The route's template and rule; a request that matched no route needs a reader's
    credentials (an unknown path is no way around the token) and then gets its 404."""
    template = template_of(request)
    if template is None:
        return None, _READ
    # HEAD is GET without the body (aiohttp serves it beside each GET). A route without a
    # row is refused to all but admins (the test over ROUTES catches it first).
    method = "GET" if request.method == "HEAD" else request.method
    return template, ROUTES.get((method, template), _ADMIN)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from, as the audit trail names them."""

    who: str  # `local`, `cluster-token`, `node NAME`, `token NAME (ID)`
    role: Role
    services: str = ""  # an operator token's glob, when limited
    token_id: str = ""
    node: bool = False  # a node of the cluster, proven by its key

    def covers(self, service: str) -> bool:
        return glob_covers(self.services, service)

    def may(self, permission: Permission) -> bool:
        if permission == "open":
            return True
        if permission == "node":
            return not self.token_id
        return ROLES.index(self.role) >= ROLES.index(NEEDS[permission])


def refusal(principal: Principal, permission: Permission, method: str, template: str) -> str:
    if permission == "node":
        return (
            f"{method} {template} is a route between nodes: it takes a node's key, never a "
            f"user's token"
        )
    return (
        f"{method} {template} needs the '{permission}' permission (a {NEEDS[permission]} "
        f"token or more); {principal.who} is {principal.role}"
    )


PRINCIPAL = web.RequestKey("shoal_principal", Principal)
# The object a write named (a service, secret, network, token), for the audit trail.
RESOURCE = web.RequestKey("shoal_resource", str)


def outside_scope(principal: Principal, name: str) -> str:
    return (
        f"{principal.who} may act only on services matching {principal.services!r}, not on {name!r}"
    )


def claim_service(request: web.Request, name: str) -> None:
    """A handler about to create the service, job or cron job `name`: 403 unless the
    caller's token covers that name; noted for the audit trail either way."""
    request[RESOURCE] = name
    principal = request.get(PRINCIPAL)
    if principal is not None and not principal.covers(name):
        raise HttpError(403, outside_scope(principal, name), "name")


def note_resource(request: web.Request, name: str) -> None:
    request[RESOURCE] = name


def refuse_new_host_binds(
    request: web.Request, spec: ServiceSpec, before: ServiceSpec | None = None
) -> None:
    """A task that mounts a host path can reach anything the node's user can (root, often):
    only an admin adds such a mount. An operator still updates and scales a service an admin
    gave one, as long as it adds or changes none."""
    principal = request.get(PRINCIPAL)
    if principal is None or principal.may("admin"):
        return
    had = {
        (v.source, v.target, v.read_only)
        for v in (before.volumes if before else ())
        if v.type == "bind"
    }
    added = [
        v for v in spec.volumes if v.type == "bind" and (v.source, v.target, v.read_only) not in had
    ]
    if added:
        raise HttpError(
            403,
            f"a bind mount of the host path {added[0].source!r} needs the "
            f"'admin' permission; {principal.who} is {principal.role}",
            "volumes",
        )
