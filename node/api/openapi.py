"""The API's OpenAPI 3.1 description, served at `GET /v1/openapi.json`.

Paths, methods and path parameters are read from the node's router, so no route is left out
and none outlives its handler; `OPERATIONS` adds what a router cannot know (a summary, the
query parameters, the body, the kind of answer), and a test fails when a route has no entry
or an entry no route. A body is the JSON Schema of the dataclass its handler validates it
with (consensus.wire.from_plain), so a field added there appears here.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from aiohttp import web

from consensus.crons import CronSpec
from consensus.services import SHORTHAND_FIELDS, ServiceSpec
from node.api.acl import ROUTES, templates_of
from node.api.cluster import CertificateRequest, NodePatch, RaftRole
from node.api.gossip_keys import RotateRequest
from node.api.tokens import TokenRequest
from node.config import shoal_version
from node.join import JoinRequest

Answer = Literal["json", "events", "ndjson", "text", "metrics", "html", "asset", "binary"]


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    schema: dict = dataclasses.field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    body: Any = None  # a dataclass, or a JSON Schema (dict), or a media type -> schema map
    body_required: bool = True
    query: tuple[Query, ...] = ()
    answer: Answer = "json"
    created: bool = False  # 201 on success


UNDESCRIBED = "(not described yet)"
_FLAG = {"type": "string", "enum": ["0", "1", "true", "false", "yes", "no"]}
_NUMBER = {"type": "string", "pattern": "^[0-9]{1,18}$"}
_SECRET_BODY = {
    "type": "object",
    "required": ["name", "data"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
        "data": {"type": "string", "contentEncoding": "base64"},
        "exist_ok": {"type": "boolean"},
    },
}
_SERVICE = "services"
_FILES = "secrets and configs"

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): Operation("Liveness of this node, its Raft role and leader", "cluster"),
    ("GET", "/metrics"): Operation(
        "This node's Prometheus metrics", "observability", answer="metrics"
    ),
    ("GET", "/v1/openapi.json"): Operation("This description", "observability"),
    ("GET", "/v1/cluster"): Operation("Leader, term, commit index, voters and members", "cluster"),
    ("GET", "/v1/cluster/members"): Operation(
        "This node's gossip view and packet counters", "cluster"
    ),
    ("GET", "/v1/cluster/token"): Operation("The join token and the API token", "cluster"),
    ("GET", "/v1/cluster/recovery-key"): Operation(
        "The recovery key a restore of this cluster's snapshots needs", "cluster"
    ),
    ("POST", "/v1/cluster/token/rotate"): Operation(
        "A new join token; the previous one is refused from then on", "cluster"
    ),
    ("POST", "/v1/cluster/ca/rotate"): Operation(
        "A new root CA, cross-signed by the current one; nodes move to it by themselves", "cluster"
    ),
    ("GET", "/v1/cluster/gossip-keys"): Operation(
        "The gossip keyring: key ids, the primary one, the nodes that hold each", "cluster"
    ),
    ("POST", "/v1/cluster/gossip-keys/rotate"): Operation(
        "Rotate the gossip key: install a new one, make it primary once every live node "
        "holds it, remove the old ones after a grace period; one line per step as it is done",
        "cluster",
        body=RotateRequest,
        body_required=False,
        answer="ndjson",
    ),
    ("GET", "/v1/cluster/ca"): Operation("The cluster's CA certificates (PEM)", "cluster"),
    ("GET", "/v1/cluster/snapshot"): Operation(
        "A snapshot file of the replicated state at a committed index", "cluster", answer="binary"
    ),
    ("GET", "/v1/nodes"): Operation("Every node", "nodes"),
    ("GET", "/v1/nodes/{ref}"): Operation("One node, by id, name or unique id prefix", "nodes"),
    ("PATCH", "/v1/nodes/{ref}"): Operation(
        "Change a node's labels or availability", "nodes", body=NodePatch
    ),
    ("DELETE", "/v1/nodes/{ref}"): Operation(
        "Remove a node", "nodes", query=(Query("force", "remove it even while it is ready", _FLAG),)
    ),
    ("POST", "/v1/nodes/{ref}/promote"): Operation("Make a node a Raft voter", "nodes"),
    ("POST", "/v1/nodes/{ref}/demote"): Operation("Make a voter a member", "nodes"),
    ("POST", "/v1/join"): Operation(
        "A node asks to join (signed with the join token)", "internal", body=JoinRequest
    ),
    ("POST", "/v1/internal/propose"): Operation(
        "Commit an encoded command (forwarded to the leader)",
        "internal",
        body={"application/msgpack": {"type": "string", "contentMediaType": "application/msgpack"}},
    ),
    ("POST", "/v1/internal/raft-role"): Operation(
        "Change this node's Raft role", "internal", body=RaftRole
    ),
    ("POST", "/v1/internal/removed"): Operation("Tell this node it was removed", "internal"),
    ("POST", "/v1/internal/certificate"): Operation(
        "Sign the calling node's renewed certificate from its CSR",
        "internal",
        body=CertificateRequest,
    ),
    ("GET", "/v1/internal/feed"): Operation(
        "A voter's committed-state feed for a member: a snapshot or the entries after"
        " `after`, then every commit (a stream of length-prefixed msgpack frames)",
        "internal",
        query=(Query("after", "the index the member has applied", _NUMBER),),
        answer="binary",
    ),
    ("GET", "/v1/internal/read-index"): Operation(
        "A read index for a member's linearizable read (confirmed by the leader)",
        "internal",
    ),
    ("GET", "/v1/services"): Operation("Every service with its replicas and rollout", _SERVICE),
    ("POST", "/v1/services"): Operation(
        "Create a service", _SERVICE, body=ServiceSpec, created=True
    ),
    ("GET", "/v1/services/{ref}"): Operation("One service", _SERVICE),
    ("PATCH", "/v1/services/{ref}"): Operation(
        "Replace top-level fields of a service's spec",
        _SERVICE,
        body="service-patch",
        query=(Query("version", "answer 409 unless the service is at this version", _NUMBER),),
    ),
    ("DELETE", "/v1/services/{ref}"): Operation("Remove a service", _SERVICE),
    ("POST", "/v1/services/{ref}/rollback"): Operation(
        "Make the previous spec (or version N) current again",
        _SERVICE,
        body={
            "type": "object",
            "additionalProperties": False,
            "properties": {"to_version": {"type": "integer", "minimum": 0}},
        },
        body_required=False,
    ),
    ("GET", "/v1/services/{ref}/autoscale"): Operation(
        "A service's autoscaling policy and what the autoscaler decides now", _SERVICE
    ),
    ("GET", "/v1/services/{ref}/endpoints"): Operation(
        "A service's endpoint table as this node's gossip view shows it", _SERVICE
    ),
    ("POST", "/v1/apply"): Operation(
        "Create or update services and cron jobs from a Compose file, Kubernetes documents or specs",
        _SERVICE,
        body={"application/yaml": {"type": "string"}, "application/json": {}},
        query=(Query("strict", "unsupported fields are errors", _FLAG),),
    ),
    ("POST", "/v1/services/{ref}/promote"): Operation(
        "Go on with an update waiting in its canary phase", _SERVICE
    ),
    ("POST", "/v1/services/{ref}/rebalance"): Operation(
        "Move tasks to spread the service over its nodes again", _SERVICE
    ),
    ("GET", "/v1/jobs"): Operation("Every job with its completions and tasks", "jobs"),
    ("POST", "/v1/jobs"): Operation(
        "Run a job (a service spec whose tasks run to completion)",
        "jobs",
        body=ServiceSpec,
        created=True,
    ),
    ("GET", "/v1/jobs/{ref}"): Operation(
        "One job, with each task's attempt, exit code and reason", "jobs"
    ),
    ("DELETE", "/v1/jobs/{ref}"): Operation("Remove a job and stop its tasks", "jobs"),
    ("GET", "/v1/crons"): Operation("Every cron job with its last and next runs", "crons"),
    ("POST", "/v1/crons"): Operation("Create a cron job", "crons", body=CronSpec, created=True),
    ("GET", "/v1/crons/{name}"): Operation("One cron job with its runs", "crons"),
    ("DELETE", "/v1/crons/{name}"): Operation("Remove a cron job", "crons"),
    ("GET", "/v1/networks"): Operation("Overlay networks", "networks"),
    ("POST", "/v1/networks"): Operation(
        "Create an overlay network",
        "networks",
        created=True,
        body={
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "subnet": {"type": "string"},
                "internal": {"type": "boolean"},
                "attachable": {"type": "boolean"},
                "encrypted": {"type": "boolean"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "exist_ok": {"type": "boolean"},
            },
        },
    ),
    ("GET", "/v1/networks/{name}"): Operation("One network with the services on it", "networks"),
    ("DELETE", "/v1/networks/{name}"): Operation("Remove a network", "networks"),
    ("POST", "/v1/networks/{name}/rotate-key"): Operation(
        "Move an encrypted network to new IPsec keys", "networks", body_required=False
    ),
    ("GET", "/v1/overlay"): Operation(
        "This node's overlay: peers, leases, VIPs and problems", "networks"
    ),
    ("GET", "/v1/tasks"): Operation(
        "Tasks, of one service or all", "tasks", query=(Query("service", "a service's name or id"),)
    ),
    ("GET", "/v1/tasks/{id}/logs"): Operation(
        "A task's output, from any node",
        "tasks",
        answer="text",
        query=(
            Query("follow", "keep streaming new lines", _FLAG),
            Query(
                "tail",
                "lines from the end, or all",
                {"type": "string", "pattern": "^(all|[0-9]{1,9})$"},
            ),
            Query("local", "read only this node's tasks (used between nodes)", _FLAG),
        ),
    ),
    ("GET", "/v1/events"): Operation(
        "Cluster events as Server-Sent Events",
        "events",
        answer="events",
        query=(
            Query("since", "replay events after this sequence number", _NUMBER),
            Query("service", "only this service's events"),
            Query("follow", "0: end after the replay", _FLAG),
        ),
    ),
    ("GET", "/v1/volumes"): Operation("Named volumes and where their data is", "volumes"),
    ("GET", "/v1/mesh"): Operation("This node's routing mesh", "mesh"),
    ("GET", "/v1/secrets"): Operation("Secrets, without their content", _FILES),
    ("POST", "/v1/secrets"): Operation("Create a secret", _FILES, body=_SECRET_BODY, created=True),
    ("GET", "/v1/secrets/{name}"): Operation("One secret, without its content", _FILES),
    ("DELETE", "/v1/secrets/{name}"): Operation("Remove a secret", _FILES),
    ("GET", "/v1/configs"): Operation("Configs", _FILES),
    ("POST", "/v1/configs"): Operation("Create a config", _FILES, body=_SECRET_BODY, created=True),
    ("GET", "/v1/configs/{name}"): Operation("One config with its content", _FILES),
    ("DELETE", "/v1/configs/{name}"): Operation("Remove a config", _FILES),
    ("GET", "/v1/tokens"): Operation("Scoped API tokens (never their secrets)", "tokens"),
    ("POST", "/v1/tokens"): Operation(
        "Create a scoped token; its secret is answered once",
        "tokens",
        body=TokenRequest,
        created=True,
    ),
    ("DELETE", "/v1/tokens/{ref}"): Operation("Revoke a token, by id or name", "tokens"),
    ("GET", "/ui"): Operation("The web dashboard", "dashboard", answer="html"),
    ("GET", "/ui/{file}"): Operation(
        "The dashboard's scripts and styles", "dashboard", answer="asset"
    ),
}

_ANSWERS: dict[str, dict] = {
    "json": {"application/json": {"schema": {}}},
    "events": {"text/event-stream": {"schema": {"type": "string"}}},
    # One JSON object per line, each written as it happens.
    "ndjson": {"application/x-ndjson": {"schema": {"type": "string"}}},
    "text": {"text/plain": {"schema": {"type": "string"}}},
    "metrics": {
        "text/plain": {"schema": {"type": "string"}},
        "application/openmetrics-text": {"schema": {"type": "string"}},
    },
    "html": {"text/html": {"schema": {"type": "string"}}},
    "asset": {
        "application/javascript": {"schema": {"type": "string"}},
        "text/css": {"schema": {"type": "string"}},
    },
    "binary": {
        "application/octet-stream": {"schema": {"type": "string", "contentEncoding": "binary"}}
    },
}
_ERRORS = {
    "400": "Malformed input: `field` names what was wrong",
    "401": "Missing or wrong API token",
    "403": "Not allowed to this caller",
    "404": "No such object",
    "409": "Conflicts with the current state",
    "503": "No quorum, or no leader within the write deadline",
}


def routes_of(router: web.UrlDispatcher) -> list[tuple[str, str]]:
    """(method, path template) of every route the router serves. A path parameter that can
    only be one of a few words (`{plural:secrets|configs}`) gives a path for each word;
    HEAD, which aiohttp adds beside each GET, is left out."""
    return [
        (route.method, template)
        for route in router.routes()
        if route.method != "HEAD" and route.resource is not None
        for template in templates_of(route.resource)
    ]


def describe(router: web.UrlDispatcher, version: str) -> dict:
    schemas: dict[str, dict] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
        }
    }
    paths: dict[str, dict] = {}
    for method, template in routes_of(router):
        # A route nobody described still appears (a test fails on it meanwhile).
        op = OPERATIONS.get((method, template)) or Operation(UNDESCRIBED, "undescribed")
        paths.setdefault(template, {})[method.lower()] = _operation(op, method, template, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Shoal API",
            "version": version,
            "description": "Any node answers; writes are forwarded to the Raft leader "
            "and answered once committed.",
        },
        "components": {
            "schemas": schemas,
            "responses": {
                code: {
                    "description": text,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
                for code, text in _ERRORS.items()
            },
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The cluster's API token (`api_token` of "
                    "GET /v1/cluster/token, admin) or a scoped token "
                    "(POST /v1/tokens)",
                }
            },
        },
        "security": [{"token": []}],
        "paths": dict(sorted(paths.items())),
    }


def _operation(op: Operation, method: str, template: str, schemas: dict[str, dict]) -> dict:
    ok = "201" if op.created else "200"
    permission = ROUTES[(method, template)].permission if (method, template) in ROUTES else "admin"
    out: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        # Who may call it (node.api.acl): open, read, write, admin or node.
        "x-shoal-permission": permission,
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", template)
        ]
        + [
            {
                "name": q.name,
                "in": "query",
                "required": False,
                "description": q.description,
                "schema": q.schema,
            }
            for q in op.query
        ],
        "responses": {
            ok: {"description": "Success", "content": _ANSWERS[op.answer]},
            **{code: {"$ref": f"#/components/responses/{code}"} for code in _ERRORS},
        },
    }
    if permission == "open":
        out["security"] = []
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required, "content": _body(op.body, schemas)}
    return out


def _body(body: Any, schemas: dict[str, dict]) -> dict:
    if body is ServiceSpec or body == "service-patch":
        spec = _service_input(schemas)
        if body == "service-patch":  # any of a spec's top-level fields, none required
            spec = {**spec, "required": []}
        return {"application/json": {"schema": spec}}
    if dataclasses.is_dataclass(body):
        return {"application/json": {"schema": schema_of(body, schemas)}}
    if "type" in body:
        return {"application/json": {"schema": body}}
    return {media: {"schema": schema} for media, schema in body.items()}


def _service_input(schemas: dict[str, dict]) -> dict:
    """A service spec as the API takes it: the canonical form, where a field may also be
    written in its shorthand (parse_service_spec turns it into the canonical form)."""
    schema_of(ServiceSpec, schemas)
    spec = schemas["ServiceSpec"]
    shorthand = {
        "type": ["string", "number", "array", "object"],
        "description": "a shorthand: '8080:80', '128Mi', '0.5', '10s', 'cmd arg', ...",
    }
    return {
        **spec,
        "properties": {
            name: {"anyOf": [schema, shorthand]} if name in SHORTHAND_FIELDS else schema
            for name, schema in spec["properties"].items()
        },
    }


def schema_of(tp: Any, schemas: dict[str, dict]) -> dict:
    """The JSON Schema of the plain values `consensus.wire.from_plain(tp, ...)` accepts;
    dataclasses go to `schemas` (components) and are referred to by name."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return {}
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        options = [schema_of(a, schemas) for a in args]
        return {"anyOf": options}
    if origin in (tuple, list):
        item = args[0] if args else Any
        return {"type": "array", "items": schema_of(item, schemas)}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(args[1], schemas)}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [member.value for member in tp]}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in schemas:
            schemas[name] = {}  # placeholder: a recursive type refers to itself
            hints = typing.get_type_hints(tp)
            fields = [f for f in dataclasses.fields(tp) if f.init]
            schemas[name] = {
                "type": "object",
                "additionalProperties": False,
                "properties": {f.name: schema_of(hints[f.name], schemas) for f in fields},
                "required": [
                    f.name
                    for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                ],
            }
        return {"$ref": f"#/components/schemas/{name}"}
    raise TypeError(f"no JSON Schema for {tp!r}")


_SCALARS: dict[Any, dict] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    bytes: {"type": "string"},
}


routes = web.RouteTableDef()


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(describe(request.app.router, shoal_version()))
