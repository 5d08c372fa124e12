"""HTTP API: overlay networks (`POST/GET/DELETE /v1/networks`, `GET /v1/networks/{name}`)
and this node's overlay status (`GET /v1/overlay`).

A network's subnet, VXLAN id, node leases and service VIPs are given out by the state
machine; a create names only what the user chooses. With `"exist_ok": true` (what `shoal
apply` sends for a Compose file's networks) a create that finds the name taken answers 200.
"""

from __future__ import annotations

import secrets as token_source
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from aiohttp import web

from consensus.networks import (
    CreateNetwork,
    Network,
    RemoveNetwork,
    RotateNetworkKey,
    network_name_problem,
    networks,
)
from consensus.tasks import services
from consensus.wire import WireError, from_plain, to_plain
from netoverlay.overlay.ipsec import OVERLAP as KEY_OVERLAP
from node.api.acl import note_resource
from node.api.context import NODE, NodeContext
from node.api.http_util import HttpError, json_body, result_or_raise

if TYPE_CHECKING:
    from node.manifests.networks import NetworkDef

routes = web.RouteTableDef()

_CREATE_FIELDS = {"name", "subnet", "internal", "attachable", "labels", "encrypted", "exist_ok"}
# Labels are kept in the replicated state, on every node: bounded like any input.
MAX_LABELS = 64
MAX_LABEL_CHARS = 256


def network_json(network: Network) -> dict:
    return to_plain(network)


def parse_create(body: object) -> tuple[CreateNetwork, bool]:
    """The command a create request asks for and its `exist_ok`, or HttpError naming the field."""
    if not isinstance(body, dict):
        raise HttpError(400, f"must be an object with a name, not {type(body).__name__}", "body")
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise HttpError(400, "unknown field", unknown[0])
    exist_ok = body.get("exist_ok", False)
    if not isinstance(exist_ok, bool):
        raise HttpError(400, "must be true or false", "exist_ok")
    plain = {k: v for k, v in body.items() if k != "exist_ok"}
    try:
        cmd = from_plain(
            CreateNetwork, {**plain, "id": token_source.token_hex(8), "at": time.time()}
        )
    except WireError as exc:
        raise HttpError(400, exc.reason, exc.field) from None
    problem = network_name_problem(cmd.name)
    if problem:
        raise HttpError(400, problem, "name")
    if len(cmd.labels) > MAX_LABELS:
        raise HttpError(400, f"at most {MAX_LABELS} labels, not {len(cmd.labels)}", "labels")
    for key, value in cmd.labels.items():
        if not key or len(key) > MAX_LABEL_CHARS or len(value) > MAX_LABEL_CHARS:
            raise HttpError(
                400, f"keys and values are 1-{MAX_LABEL_CHARS} characters", f"labels.{key[:40]}"
            )
    return cmd, exist_ok


@routes.post("/v1/networks")
async def create_network(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    cmd, exist_ok = parse_create(await json_body(request))
    note_resource(request, cmd.name)
    with shoal.store.view() as state:
        existing = networks(state).get(cmd.name)
    if existing is not None:
        if exist_ok:
            return web.json_response(network_json(existing))
        raise HttpError(409, f"network {cmd.name!r} already exists", "name")
    result_or_raise(await shoal.control.submit(cmd))
    with shoal.store.view() as state:
        return web.json_response(network_json(networks(state)[cmd.name]), status=201)


@routes.get("/v1/networks")
async def list_networks(request: web.Request) -> web.Response:
    with request.app[NODE].store.view() as state:
        return web.json_response([network_json(n) for _, n in sorted(networks(state).items())])


@routes.get("/v1/networks/{name}")
async def get_network(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    with request.app[NODE].store.view() as state:
        network = networks(state).get(name)
        users = sorted(
            s.name for s in services(state).values() if name in {a.name for a in s.spec.networks}
        )
    if network is None:
        raise HttpError(404, f"no such network {name!r}", "name")
    return web.json_response({**network_json(network), "services": users})


@routes.delete("/v1/networks/{name}")
async def remove_network(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    result_or_raise(await shoal.control.submit(RemoveNetwork(request.match_info["name"])))
    return web.json_response({"removed": request.match_info["name"]})


@routes.post("/v1/networks/{name}/rotate-key")
async def rotate_network_key(request: web.Request) -> web.Response:
    """A new key epoch for an encrypted network: every node moves to it without a drop, so
    one rotation must be over (the old keys retired) before the next."""
    shoal, name, now = request.app[NODE], request.match_info["name"], time.time()
    with shoal.store.view() as state:
        network = networks(state).get(name)
    if network is not None and network.key_epoch and now < network.key_rotated_at + 2 * KEY_OVERLAP:
        wait = network.key_rotated_at + 2 * KEY_OVERLAP - now
        raise HttpError(
            409, f"a key rotation of {name!r} is under way: try again in {wait:.0f} s", "name"
        )
    value = result_or_raise(await shoal.control.submit(RotateNetworkKey(name, now)))
    return web.json_response({"name": request.match_info["name"], **value})


@routes.get("/v1/overlay")
async def overlay_status(request: web.Request) -> web.Response:
    overlay = request.app[NODE].overlay
    if overlay is None:
        return web.json_response({"enabled": False})
    return web.json_response({"enabled": True, **overlay.status()})


async def ensure_networks(shoal: NodeContext, wanted: Iterable[NetworkDef]) -> list[dict]:
    """Make the networks a Compose file defines and are missing (`shoal apply`); an external
    one must exist. One row per network with what was done."""
    rows = []
    for network in wanted:
        with shoal.store.view() as state:
            exists = network.name in networks(state)
        if exists or network.external:
            if not exists:
                raise HttpError(
                    400,
                    f"external, but the cluster has no network {network.name!r}: "
                    f"create it first (POST /v1/networks)",
                    network.where,
                )
            rows.append(
                {"name": network.name, "action": "external" if network.external else "unchanged"}
            )
            continue
        cmd = CreateNetwork(
            token_source.token_hex(8),
            network.name,
            time.time(),
            network.subnet,
            network.internal,
            network.attachable,
            dict(network.labels),
            network.encrypted,
        )
        result = await shoal.control.submit(cmd)
        if not result.ok and result.code != 409:  # 409: made meanwhile by another apply
            raise HttpError(result.code, f"{network.where}: {result.error}", network.where)
        rows.append({"name": network.name, "action": "created"})
    return rows
