"""HTTP API: the cluster, its nodes, joining, and the internal calls between nodes."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from dataclasses import dataclass, field

from aiohttp import web

from consensus import codec, protocol
from consensus.model import Availability, ClusterInfo, Node
from consensus.nodes import RemoveNode, RotateJoinToken, UpdateNode, nodes, nodes_matching, voters
from consensus.raft import NotLeader, SyncProgress
from consensus.state import ClusterState
from consensus.wire import from_plain, to_plain
from node import backup
from node.api.context import NODE, NodeContext
from node.api.guard import calling_node
from node.api.http_util import (
    HttpError,
    json_body,
    parse_body,
    read_body,
    require_type,
    result_or_raise,
)
from node.config import shoal_version
from node.control import COMMAND_TYPE, MAX_COMMAND_BYTES
from node.join import JoinRequest, accept_join
from node.loops.protocol import Announced
from node.loops.voters import NotCaughtUp
from node.pki import cluster_ca
from node.pki.authority import NODE_LIFETIME, CertificateError, csr_node_id, split_bundle

routes = web.RouteTableDef()
_SNAPSHOT_CHUNK = 1 << 20

_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class NodePatch:
    add_labels: dict[str, str] = field(default_factory=dict)
    remove_labels: tuple[str, ...] = ()
    availability: Availability | None = None


@dataclass(frozen=True, slots=True)
class RaftRole:
    role: str
    voters: tuple[str, ...]


def node_json(node: Node, leader_id: str | None, announced: Announced) -> dict:
    body = to_plain(node)
    del body["key_hash"]  # of no use to a client
    body["leader"] = node.id == leader_id
    # As the node announced them (node.loops.protocol): "" for a release before that.
    body["protocol"] = announced.level
    body["version"] = announced.version
    return body


def _node_answer(shoal: NodeContext, ref: str) -> web.Response:
    node = _find(shoal, ref)
    return web.json_response(node_json(node, _leader_id(shoal), shoal.levels.of(node.id)))


def _leader_id(shoal: NodeContext) -> str | None:
    leader = shoal.control.leader_node()
    return leader.id if leader else None


def _find(shoal: NodeContext, ref: str) -> Node:
    with shoal.store.view() as state:
        return node_by_ref(state, ref)


def node_by_ref(state: ClusterState, ref: str) -> Node:
    """The one node `ref` names, or a 404 (none) or 400 (several, each named)."""
    found = nodes_matching(state, ref)
    if not found:
        raise HttpError(404, f"no such node {ref!r} (use an id, a name or a unique id prefix)")
    if len(found) > 1:
        named = ", ".join(f"{n.name} ({n.id})" for n in found[:10])
        raise HttpError(
            400,
            f"{ref!r} names {len(found)} nodes: {named}; give more of the id, or the name",
            "node",
        )
    return found[0]


async def _on_leader(request: web.Request) -> web.Response | None:
    """Requests that only the leader can carry out are passed on to it verbatim; None when
    this node leads."""
    control = request.app[NODE].control
    leader = await control.leader_elsewhere()
    if leader is None:
        return None
    body = await request.read() if request.can_read_body else None
    return web.json_response(await control.relay(leader, request.method, request.path_qs, body))


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 with ok true once this node holds the cluster's state; 503 with ok false and how
    far behind it is until then (a load balancer or an orchestrator's probe reads either)."""
    shoal = request.app[NODE]
    status = shoal.raft.status()
    progress = shoal.raft.progress()
    return web.json_response(
        {
            "ok": progress.caught_up,
            "node_id": shoal.node_id,
            "role": status.role,
            "leader": status.leader,
            "has_quorum": status.has_quorum,
            **_sync_json(progress),
        },
        status=200 if progress.caught_up else 503,
    )


def _sync_json(progress: SyncProgress) -> dict:
    return {"caught_up": progress.caught_up, "behind": progress.behind, "sync": progress.describe()}


@routes.get("/v1/cluster")
async def get_cluster(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    status = shoal.raft.status()
    leader = shoal.control.node_by_raft_address(status.leader)
    with shoal.store.view() as state:
        cluster = state.cluster
        all_nodes = sorted(nodes(state).values(), key=lambda n: n.name)
        applied = state.applied
    return web.json_response(
        {
            "cluster_id": cluster.cluster_id,
            "created_at": cluster.created_at,
            "strategy": cluster.strategy,
            "leader": {"id": leader.id, "name": leader.name, "address": leader.address}
            if leader
            else None,
            "term": status.term,
            "commit_index": status.commit_index,
            "applied": applied,
            "voters": [n.id for n in all_nodes if n.role == "voter"],
            "members": [n.id for n in all_nodes if n.role != "voter"],
            # The cluster's protocol level: the lowest any of its nodes speaks (what the
            # leader writes), and what this node speaks and runs.
            "protocol": {
                "minimum": shoal.levels.minimum,
                "unheard": shoal.levels.unheard,
                "this_node": protocol.PROTOCOL,
                "version": shoal_version(),
                # Entries this node wrote as leader holding several proposals: none until
                # the minimum reaches the level that added them.
                "batched_entries": shoal.raft.batched_entries,
            },
            "this_node": {
                "id": shoal.node_id,
                "raft_address": shoal.config.raft_address,
                "raft_role": status.role,
                "is_leader": status.is_leader,
                **_sync_json(shoal.raft.progress()),
                "raft_partners": list(status.partners),
                "connected_partners": list(status.connected_partners),
            },
        }
    )


@routes.get("/v1/cluster/members")
async def get_members(request: web.Request) -> web.Response:
    """This node's gossip view: who it believes alive, suspect, dead or gone, and the
    packets it dropped (malformed, unauthenticated, replayed)."""
    shoal = request.app[NODE]
    with shoal.store.view() as state:
        names = {n.id: n.name for n in nodes(state).values()}
    members = sorted(shoal.gossip.members(), key=lambda m: m.node_id)
    now = asyncio.get_running_loop().time()  # gossip's clock
    return web.json_response(
        {
            "node_id": shoal.node_id,
            "members": [
                {
                    "node_id": m.node_id,
                    "name": names.get(m.node_id),
                    "address": f"{m.address[0]}:{m.address[1]}",
                    "state": m.state.value,
                    "incarnation": m.incarnation,
                    "seconds_in_state": round(max(0.0, now - m.since), 3),
                }
                for m in members
            ],
            "stats": to_plain(shoal.gossip.stats),
        }
    )


def _join_token(shoal: NodeContext, info: ClusterInfo) -> str:
    try:
        return str(cluster_ca.current_token(info, shoal.keys))
    except cluster_ca.NoAuthority as exc:
        raise HttpError(503, str(exc)) from None


@routes.get("/v1/cluster/token")
async def get_token(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    with shoal.store.view() as state:
        info = state.cluster
    return web.json_response({"token": _join_token(shoal, info), "api_token": shoal.keys.api_token})


@routes.get("/v1/cluster/recovery-key")
async def get_recovery_key(request: web.Request) -> web.Response:
    """The cluster id and secret (node.security.ClusterKeys.recovery_key): what restoring a
    snapshot of this cluster needs. Admin only, and only over TLS or the node's socket."""
    return web.json_response({"recovery_key": request.app[NODE].keys.recovery_key})


@routes.post("/v1/cluster/token/rotate")
async def rotate_token(request: web.Request) -> web.Response:
    """A new join token; the one before stops working at once (a join already accepted
    stays)."""
    shoal = request.app[NODE]
    with shoal.store.view() as state:
        info = state.cluster
    generation = result_or_raise(await shoal.control.submit(RotateJoinToken(info.join_generation)))
    info = dataclasses.replace(info, join_generation=generation)
    return web.json_response({"token": _join_token(shoal, info)})


@routes.post("/v1/cluster/ca/rotate")
async def rotate_ca(request: web.Request) -> web.Response:
    """A new root CA: trusted beside the current one, which cross-signs it, so no connection
    fails while the nodes move to certificates of the new root; answers its join token."""
    shoal = request.app[NODE]
    with shoal.store.view() as state:
        info = state.cluster
    try:
        command = await asyncio.to_thread(cluster_ca.rotation, info, shoal.keys, time.time())
    except cluster_ca.NoAuthority as exc:
        raise HttpError(503, str(exc)) from None
    result_or_raise(await shoal.control.submit(command))
    info = dataclasses.replace(info, ca_certificates=command.certificates)
    return web.json_response({"token": _join_token(shoal, info)})


@routes.get("/v1/cluster/ca")
async def get_ca(request: web.Request) -> web.Response:
    """The CA certificates this node trusts (public): a joining node pins the one its token
    names before it sends anything; answered also while the node catches up."""
    shoal = request.app[NODE]
    return web.json_response(
        {
            "cluster_id": shoal.keys.cluster_id,
            "certificates": split_bundle(shoal.tls.ca_bundle),
            # What a joining node checks it can read (node.join.check_level).
            "protocol": shoal.levels.minimum,
            "protocol_exact": shoal.levels.exact,
        }
    )


@routes.get("/v1/cluster/snapshot")
async def get_snapshot(request: web.Request) -> web.StreamResponse:
    """A snapshot of the replicated state (consensus.snapshot): taken once the read index is
    applied here (or of this node's copy with ?stale=1), its header first."""
    shoal = request.app[NODE]
    state, term = backup.capture(shoal.raft)
    header, payload = await asyncio.to_thread(backup.encode, state, shoal.keys, term, time.time())
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(header) + len(payload)),
        }
    )
    await response.prepare(request)
    await response.write(header)
    view = memoryview(payload)
    for start in range(0, len(view), _SNAPSHOT_CHUNK):
        await response.write(view[start : start + _SNAPSHOT_CHUNK])
    await response.write_eof()
    return response


@routes.get("/v1/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    leader_id = _leader_id(shoal)
    with shoal.store.view() as state:
        rows = sorted(nodes(state).values(), key=lambda n: n.name)
    return web.json_response([node_json(n, leader_id, shoal.levels.of(n.id)) for n in rows])


@routes.get("/v1/nodes/{ref}")
async def get_node(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    return _node_answer(shoal, request.match_info["ref"])


@routes.patch("/v1/nodes/{ref}")
async def patch_node(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    patch = await parse_body(request, NodePatch)
    for key, value in patch.add_labels.items():
        if not _LABEL_KEY.match(key):
            raise HttpError(
                400,
                "label keys are 1-128 letters, digits, '.', '_', '/' or '-'",
                f"add_labels.{key}",
            )
        if len(value) > 256:
            raise HttpError(400, "label values are at most 256 characters", f"add_labels.{key}")
    node = _find(shoal, request.match_info["ref"])
    result_or_raise(
        await shoal.control.submit(
            UpdateNode(node.id, patch.add_labels, patch.remove_labels, patch.availability)
        )
    )
    return _node_answer(shoal, node.id)


@routes.delete("/v1/nodes/{ref}")
async def delete_node(request: web.Request) -> web.Response:
    if (forwarded := await _on_leader(request)) is not None:
        return forwarded
    shoal = request.app[NODE]
    node = _find(shoal, request.match_info["ref"])
    force = request.query.get("force", "").lower() in ("1", "true", "yes")
    if node.id == shoal.node_id:
        raise HttpError(
            409, f"node {node.name} is the leader; remove it from another node after it has stopped"
        )
    if node.status == "ready" and not force:
        raise HttpError(409, f"node {node.name} is ready; stop it first, or use --force")
    if node.role == "voter":
        try:
            await shoal.voters.remove_seat(node)
        except ValueError as exc:
            raise HttpError(409, str(exc)) from None
    result_or_raise(await shoal.control.submit(RemoveNode(node.id)))
    await shoal.tell_removed(node)
    return web.json_response({"removed": node.id})


@routes.post("/v1/nodes/{ref}/{verb:promote|demote}")
async def change_role(request: web.Request) -> web.Response:
    if (forwarded := await _on_leader(request)) is not None:
        return forwarded
    shoal = request.app[NODE]
    node = _find(shoal, request.match_info["ref"])
    change = (
        shoal.voters.promote if request.match_info["verb"] == "promote" else shoal.voters.demote
    )
    try:
        await change(node)
    except (ValueError, NotCaughtUp) as exc:  # the voter set cannot change that way now
        raise HttpError(409, str(exc)) from None
    return _node_answer(shoal, node.id)


@routes.post("/v1/join")
async def join(request: web.Request) -> web.Response:
    if (forwarded := await _on_leader(request)) is not None:
        return forwarded
    shoal = request.app[NODE]
    join_request = from_plain(JoinRequest, await json_body(request))
    accepted = await accept_join(shoal.control, shoal.keys, join_request)
    return web.json_response(to_plain(accepted))


# -- between nodes --------------------------------------------------------------------
@routes.post("/v1/internal/propose")
async def internal_propose(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    # Raw commands skip every check the API makes: only nodes propose them.
    calling_node(request, shoal.store.view)
    require_type(request, lambda t: t == COMMAND_TYPE, COMMAND_TYPE)
    data = await read_body(request, MAX_COMMAND_BYTES)
    try:
        codec.decode(data)  # validate before it enters the log
    except codec.CodecError as exc:
        raise HttpError(400, str(exc)) from None
    if not shoal.raft.is_leader():
        raise NotLeader()
    result = await shoal.raft.propose_bytes(data)
    return web.json_response({"result": result.to_plain()})


@routes.post("/v1/internal/raft-role")
async def internal_raft_role(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    calling_node(request, shoal.store.view)
    change = await parse_body(request, RaftRole)
    if change.role not in ("voter", "member"):
        raise HttpError(400, "role must be 'voter' or 'member'", "role")
    await shoal.set_raft_role(change.role, list(change.voters))
    return web.json_response({"role": change.role})


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    csr: str
    lifetime: float = NODE_LIFETIME


@routes.post("/v1/internal/certificate")
async def internal_certificate(request: web.Request) -> web.Response:
    """A node renews its own certificate: only for itself, as the state records it."""
    shoal = request.app[NODE]
    caller = calling_node(request, shoal.store.view)
    asked = await parse_body(request, CertificateRequest)
    with shoal.store.view() as state:
        info = state.cluster
    try:
        if csr_node_id(asked.csr.encode()) != caller.id:
            raise HttpError(403, "a node may renew only its own certificate", "csr")
        certificate = cluster_ca.issue(
            info, shoal.keys, asked.csr.encode(), caller, lifetime=asked.lifetime, now=time.time()
        )
    except CertificateError as exc:
        raise HttpError(400, str(exc), "csr") from None
    except cluster_ca.NoAuthority as exc:
        raise HttpError(503, str(exc)) from None
    return web.json_response(
        {"certificate": certificate.decode(), "ca_certificates": list(info.ca_certificates)}
    )


@routes.post("/v1/internal/removed")
async def internal_removed(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    caller = calling_node(request, shoal.store.view)
    shoal.request_stop(f"removed from the cluster (told by {caller.name})", left_cluster=True)
    return web.json_response({"stopping": True})


def voter_addresses(shoal: NodeContext) -> list[str]:
    with shoal.store.view() as state:
        return [v.raft_address for v in voters(state)]
