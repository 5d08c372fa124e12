"""HTTP API: secrets and configs (`/v1/secrets`, `/v1/configs`).

A secret is sealed here, on the node that receives it, before it is proposed: the Raft log,
snapshots and data dirs hold ciphertext only, and no answer of this API holds a secret's
content (the agent of a node running a task that uses one opens it in the node's own
process: node.agent.secret_fetch). Configs are kept plain, and `inspect` shows their
content (as Swarm does).
Content travels base64-encoded in JSON (`{"name": ..., "data": ...}`), so any bytes fit.
With `"exist_ok": true` (what `shoal apply` sends), a create that finds the name taken by the
same content answers 200 with it, and one with other content a 409 that says so.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets as token_source
import time

from aiohttp import web

from consensus.secrets import (
    Blob,
    CreateBlob,
    DeleteBlob,
    Kind,
    blobs,
    name_problem,
    size_problem,
    users_of,
)
from consensus.state import ClusterState
from node.api.acl import note_resource
from node.api.context import NODE
from node.api.http_util import HttpError, json_body, query_flag, result_or_raise
from node.secret_box import SecretBox, SecretSealError

routes = web.RouteTableDef()

_PLURAL = "{plural:secrets|configs}"


def _kind(request: web.Request) -> Kind:
    return "secret" if request.match_info["plural"] == "secrets" else "config"


def blob_json(blob: Blob, users: list[str], *, with_data: bool = False) -> dict:
    """What the API shows of a secret or config: never a secret's content."""
    body = {
        "id": blob.id,
        "name": blob.name,
        "kind": blob.kind,
        "size": blob.size,
        "created_at": blob.created_at,
        "updated_at": blob.created_at,
        "services": users,
    }
    if blob.kind == "config":
        body["digest"] = f"sha256:{blob.digest}"
        if with_data:
            body["data"] = base64.b64encode(blob.data).decode()
    return body


def parse_create(kind: Kind, body: object) -> tuple[str, bytes]:
    """The name and content of a create request, or HttpError naming the bad field."""
    if not isinstance(body, dict):
        raise HttpError(
            400, f"must be an object with name and data, not {type(body).__name__}", "body"
        )
    unknown = sorted(set(body) - {"name", "data", "exist_ok"})
    if unknown:
        raise HttpError(400, "unknown field", unknown[0])
    name = body.get("name")
    problem = name_problem(name)
    if problem:
        raise HttpError(400, problem, "name")
    if not isinstance(body.get("exist_ok", False), bool):
        raise HttpError(400, f"must be true or false, not {body['exist_ok']!r}"[:200], "exist_ok")
    raw = body.get("data")
    if not isinstance(raw, str):
        raise HttpError(
            400, f"must be the {kind}'s content, base64-encoded, not {raw!r}"[:200], "data"
        )
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: characters outside ASCII
        raise HttpError(400, f"is not valid base64: {exc}", "data") from None
    problem = size_problem(kind, len(data))
    if problem:
        raise HttpError(400, problem, "data")
    return name, data  # type: ignore[return-value]


def _blob_or_404(state: ClusterState, kind: Kind, name: str) -> Blob:
    blob = blobs(state, kind).get(name)
    if blob is None:
        raise HttpError(404, f"no such {kind} {name!r}")
    return blob


@routes.get(f"/v1/{_PLURAL}")
async def list_blobs(request: web.Request) -> web.Response:
    kind = _kind(request)
    with request.app[NODE].store.view() as state:
        rows = [
            blob_json(b, users_of(state, kind, b.name))
            for b in sorted(blobs(state, kind).values(), key=lambda b: b.name)
        ]
    return web.json_response(rows)


@routes.get(f"/v1/{_PLURAL}/{{name}}")
async def inspect_blob(request: web.Request) -> web.Response:
    kind, name = _kind(request), request.match_info["name"]
    with request.app[NODE].store.view() as state:
        blob = _blob_or_404(state, kind, name)
        users = users_of(state, kind, name)
    return web.json_response(blob_json(blob, users, with_data=True))


@routes.post(f"/v1/{_PLURAL}")
async def create_blob(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    kind = _kind(request)
    body = await json_body(request)
    name, data = parse_create(kind, body)
    note_resource(request, name)
    with shoal.store.view() as state:
        taken = blobs(state, kind).get(name)
        users = users_of(state, kind, name)
    if taken and body.get("exist_ok"):
        refuse_other_content(taken, SecretBox(shoal.keys.secret), data)
        return web.json_response(blob_json(taken, users), status=200)
    if taken:  # the state machine checks again at commit; this answer names the field
        raise HttpError(409, f"{kind} {name!r} already exists", "name")
    if query_flag(request.query, "dry_run"):
        # All checked and nothing created: `shoal apply` checks every file before it changes any.
        return web.json_response({"name": name, "size": len(data), "dry_run": True}, status=200)
    stored = SecretBox(shoal.keys.secret).seal(name, data) if kind == "secret" else data
    result_or_raise(
        await shoal.control.submit(
            CreateBlob(kind, token_source.token_hex(6), name, len(data), stored, time.time())
        )
    )
    with shoal.store.view() as state:
        blob = _blob_or_404(state, kind, name)
    return web.json_response(blob_json(blob, []), status=201)


def refuse_other_content(blob: Blob, box: SecretBox, data: bytes) -> None:
    """A 409 unless `blob` holds `data`: secrets and configs cannot change, so going on with
    the old content would run services on stale data. Telling a caller whether its guess is a
    secret's content reveals nothing it could not read by mounting the secret in a service."""
    try:
        stored = box.open(blob.name, blob.data) if blob.kind == "secret" else blob.data
    except SecretSealError as exc:
        raise HttpError(500, str(exc), "data") from None
    if not hmac.compare_digest(stored, data):
        raise HttpError(
            409,
            f"{blob.kind} {blob.name!r} already exists with other content, and "
            f"{blob.kind}s cannot change: create it under a new name and refer to that, "
            f"or remove the old one (shoal {blob.kind} rm {blob.name}) when no service uses it",
            "data",
        )


@routes.delete(f"/v1/{_PLURAL}/{{name}}")
async def delete_blob(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    kind, name = _kind(request), request.match_info["name"]
    with shoal.store.view() as state:
        _blob_or_404(state, kind, name)
    value = result_or_raise(await shoal.control.submit(DeleteBlob(kind, name)))
    return web.json_response({"deleted": name, "id": value["id"]})
