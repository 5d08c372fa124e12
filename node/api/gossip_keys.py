"""HTTP API: the gossip keyring (ids only, never a key) and its rotation.

The rotation answers as it goes: one JSON object per line (application/x-ndjson), a step
each (node.gossip_rotation.Progress), then `{"step": "error", ...}` with the status if a step
failed. What can be refused before anything changed (a bad body, a cluster whose nodes do not
all speak the keyring's protocol level) is refused as a plain HTTP error.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass

from aiohttp import web

from consensus import protocol
from consensus.gossip_keys import gossip_keys
from consensus.nodes import nodes
from consensus.raft import ProposeError
from consensus.wire import to_plain
from node.api.context import NODE
from node.api.http_util import HttpError, parse_body
from node.gossip_rotation import MAX_GRACE, MAX_WAIT, Rotation, RotationError

routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class RotateRequest:
    # Seconds between every node sealing with the new key and the old keys' removal.
    grace: float = 5.0
    # Seconds to wait for every live node to announce each step.
    wait: float = 30.0


def _check(value: float, field: str, high: float, low: float = 0.0) -> None:
    if not math.isfinite(value) or not low <= value <= high:
        raise HttpError(400, f"must be between {low:g} and {high:g} seconds, not {value!r}", field)


@routes.get("/v1/cluster/gossip-keys")
async def list_gossip_keys(request: web.Request) -> web.Response:
    """The ring's keys by id, the primary one, and which nodes announce holding each (as
    this node's gossip view shows them)."""
    shoal = request.app[NODE]
    with shoal.store.view() as state:
        rows = dict(gossip_keys(state))
        names = {n.id: n.name for n in nodes(state).values()}
    announced = shoal.gossip_keyring.reports()
    live = {m.node_id for m in shoal.gossip.members() if not m.gone}
    primary, held = shoal.gossip.keyring
    if rows:
        ring = [(r.id, r.primary, r.installed_at, not r.sealed) for r in rows.values()]
    else:  # a cluster that never rotated: its first key, derived from the cluster secret
        ring = [(primary, True, 0.0, True)]

    def holders(key: str, as_primary: bool) -> list[str]:
        return sorted(
            names.get(node_id, node_id)
            for node_id, report in announced.items()
            if node_id in live and (report.primary == key if as_primary else key in report.held)
        )

    return web.json_response(
        {
            "primary": next((kid for kid, is_primary, _, _ in ring if is_primary), primary),
            "keys": [
                {
                    "id": kid,
                    "primary": is_primary,
                    "installed_at": installed_at,
                    "derived_from_cluster_secret": derived,
                    "held_by": holders(kid, False),
                    "primary_on": holders(kid, True),
                }
                for kid, is_primary, installed_at, derived in sorted(ring, key=lambda r: r[2])
            ],
            "this_node": {"primary": primary, "held": held},
            "live_nodes": sorted(names.get(n, n) for n in live),
        }
    )


@routes.post("/v1/cluster/gossip-keys/rotate")
async def rotate_gossip_key(request: web.Request) -> web.StreamResponse:
    shoal = request.app[NODE]
    asked = await parse_body(request, RotateRequest) if request.can_read_body else RotateRequest()
    _check(asked.grace, "grace", MAX_GRACE)
    _check(asked.wait, "wait", MAX_WAIT, low=1.0)
    if shoal.levels.minimum < protocol.GOSSIP_KEYRING:
        raise HttpError(
            409,
            f"the cluster's protocol level is {shoal.levels.minimum} and the gossip keyring "
            f"needs {protocol.GOSSIP_KEYRING}: upgrade every node first (shoal node ls shows "
            "each node's level)",
        )
    if shoal.gossip_keyring.rotating.locked():
        raise HttpError(409, "a rotation of the gossip key is already running on this node")
    rotation = Rotation(shoal.store.view, shoal.gossip, shoal.gossip_keyring, shoal.control.submit)
    response = web.StreamResponse(
        headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    try:
        async with contextlib.aclosing(rotation.run(asked.grace, asked.wait)) as steps:
            async for step in steps:
                await response.write(_line(to_plain(step)))
    except RotationError as exc:
        await response.write(_line({"step": "error", "status": exc.status, "detail": str(exc)}))
    except ProposeError as exc:  # no quorum: nothing more was changed
        await response.write(_line({"step": "error", "status": 503, "detail": str(exc)}))
    await response.write_eof()
    return response


def _line(body: dict[str, object]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"
