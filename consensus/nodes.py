"""Commands about the cluster and its nodes, and how the state machine applies them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from consensus.codec import command
from consensus.model import Availability, ClusterInfo, Node, NodeRole, NodeStatus, Resources
from consensus.state import ClusterState, Result, handles, register_table

NODES = "nodes"
register_table(NODES, Node)

# A join is accepted within this many seconds of being signed (clock skew included).
JOIN_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class SeenJoin:
    """A join nonce the cluster accepted, and when its join was signed."""

    signed_at: float


# Nonces of the joins accepted lately, replicated so that a leader elected after a join
# refuses it played again; kept until no join signed as early can pass the window.
JOIN_NONCES = "join_nonces"
register_table(JOIN_NONCES, SeenJoin)

# Called with a node's id after it registers and after it is removed, by the modules whose
# tables hold something per node (overlay networks lease each node a block of addresses).
NODE_REGISTERED: list[Callable[[ClusterState, str], None]] = []
NODE_REMOVED: list[Callable[[ClusterState, str], None]] = []


def nodes(state: ClusterState) -> dict[str, Node]:
    return state.table(NODES)


def nodes_matching(state: ClusterState, ref: str) -> list[Node]:
    """The nodes `ref` names, sorted by id: the node with that id, else the node with that
    name, else every node whose id starts with `ref` (one, or several when it is ambiguous)."""
    table = nodes(state)
    if ref in table:
        return [table[ref]]
    by_name = [n for n in table.values() if n.name == ref]
    if by_name:
        return sorted(by_name, key=lambda n: n.id)
    return sorted((n for n in table.values() if ref and n.id.startswith(ref)), key=lambda n: n.id)


def voters(state: ClusterState) -> list[Node]:
    return sorted((n for n in nodes(state).values() if n.role == "voter"), key=lambda n: n.id)


@command("cluster.bootstrap")
@dataclass(frozen=True, slots=True)
class BootstrapCluster:
    cluster_id: str
    created_at: float
    # Where overlay networks take their subnets from; empty: consensus.ipam's default.
    overlay_cidr: str = ""
    ca_certificates: tuple[str, ...] = ()
    ca_key_sealed: bytes = b""


@command("cluster.rotate_join_token")
@dataclass(frozen=True, slots=True)
class RotateJoinToken:
    """Make a new join token valid and the current one invalid; `generation` is the one
    the caller saw current, so two concurrent rotations do not both count."""

    generation: int


@command("cluster.rotate_ca")
@dataclass(frozen=True, slots=True)
class RotateCa:
    """A new root CA (made by the proposer): `certificates` trusted from now on (the new
    root first), its sealed key and its cross-signed certificate; `replaces` is the root the
    proposer saw current, so two concurrent rotations do not both count."""

    replaces: str
    certificates: tuple[str, ...]
    key_sealed: bytes
    cross_signed: str


@dataclass(frozen=True, slots=True)
class JoinTicket:
    """What made a join unique: its nonce and when it was signed, and when the leader
    accepted it (the clock pruning old nonces is the leader's, carried in the command)."""

    nonce: str
    signed_at: float
    accepted_at: float


@command("node.register")
@dataclass(frozen=True, slots=True)
class RegisterNode:
    """A node joins, or an existing node restarts with new addresses, resources or runtime.
    Role, availability, status and labels are kept for a known node: they belong to the
    cluster and are changed through the API. A join carries its ticket: a nonce seen before
    is refused, whichever leader sees it. `reclaim`: a node that joined again under the
    name and address of a node that is not ready takes its place (and its tasks) with a new
    key, as a joining member; only the leader's join, which checked the join token, sets it."""

    node: Node
    join: JoinTicket | None = None
    reclaim: bool = False


@command("node.update")
@dataclass(frozen=True, slots=True)
class UpdateNode:
    node_id: str
    set_labels: dict[str, str] = field(default_factory=dict)
    remove_labels: tuple[str, ...] = ()
    availability: Availability | None = None


@command("node.role")
@dataclass(frozen=True, slots=True)
class SetNodeRole:
    node_id: str
    role: NodeRole


@command("node.status")
@dataclass(frozen=True, slots=True)
class SetNodeStatus:
    """NodeDown / NodeUp: the leader's commit of gossip's verdict."""

    node_id: str
    status: NodeStatus
    at: float


@command("node.resources")
@dataclass(frozen=True, slots=True)
class SetNodeResources:
    node_id: str
    resources: Resources
    runtime: str


@command("node.remove")
@dataclass(frozen=True, slots=True)
class RemoveNode:
    node_id: str


@command("cluster.strategy")
@dataclass(frozen=True, slots=True)
class SetStrategy:
    strategy: str


@handles(BootstrapCluster)
def _bootstrap(state: ClusterState, cmd: BootstrapCluster) -> Result:
    if state.cluster.cluster_id:
        if state.cluster.cluster_id == cmd.cluster_id:
            return Result(True)
        return Result.fail(f"cluster already bootstrapped as {state.cluster.cluster_id}")
    state.cluster = ClusterInfo(
        cluster_id=cmd.cluster_id,
        created_at=cmd.created_at,
        overlay_cidr=cmd.overlay_cidr,
        ca_certificates=cmd.ca_certificates,
        ca_key_sealed=cmd.ca_key_sealed,
    )
    return Result(True)


def _admit_join(state: ClusterState, ticket: JoinTicket) -> Result | None:
    """Refuse a nonce seen before; remember this one and forget those no join can reuse."""
    seen = state.table(JOIN_NONCES)
    if len(ticket.nonce) < 16 or len(ticket.nonce) > 64:
        return Result.fail("join.nonce: must be 16 to 64 characters", 400)
    if ticket.nonce in seen:
        return Result.fail("join refused: this join request was seen before (replayed)", 403)
    # A join signed before this passes no leader's window any more (±JOIN_WINDOW of its now).
    oldest = ticket.accepted_at - 2 * JOIN_WINDOW
    for nonce in [n for n, row in seen.items() if row.signed_at < oldest]:
        del seen[nonce]
    seen[ticket.nonce] = SeenJoin(ticket.signed_at)
    return None


@handles(RotateCa)
def _rotate_ca(state: ClusterState, cmd: RotateCa) -> Result:
    current = state.cluster.ca_certificates
    if not current or current[0] != cmd.replaces:
        return Result.fail("the cluster CA was rotated meanwhile (or is not there yet)", 409)
    if not cmd.certificates or not cmd.key_sealed:
        return Result.fail("certificates: a rotation needs the new root and its key", 400)
    state.cluster = dataclasses.replace(
        state.cluster,
        ca_certificates=cmd.certificates,
        ca_key_sealed=cmd.key_sealed,
        ca_cross_signed=cmd.cross_signed,
    )
    return Result(True)


@handles(RotateJoinToken)
def _rotate_join_token(state: ClusterState, cmd: RotateJoinToken) -> Result:
    if cmd.generation != state.cluster.join_generation:
        return Result.fail("the join token was rotated meanwhile: ask for it again", 409)
    state.cluster = dataclasses.replace(state.cluster, join_generation=cmd.generation + 1)
    return Result(True, value=cmd.generation + 1)


@handles(RegisterNode)
def _register(state: ClusterState, cmd: RegisterNode) -> Result:
    new = cmd.node
    table = nodes(state)
    # Every registration looks at every node: compare fields, never build strings per node.
    for other in table.values():
        if other.id == new.id:
            continue
        if other.name == new.name:
            return Result.fail(f"node name {new.name!r} is taken by node {other.id}", 409)
        if other.raft_port == new.raft_port and other.address == new.address:
            return Result.fail(f"raft address {new.raft_address} is used by node {other.name}", 409)
    old = table.get(new.id)
    if old is not None and cmd.reclaim:
        if old.status == "ready" or old.name != new.name or old.address != new.address:
            return Result.fail(
                f"node {old.name} ({old.id}) is {old.status} or another "
                f"machine's: it cannot be taken over",
                409,
            )
        new = dataclasses.replace(new, labels=old.labels, availability=old.availability)
    elif old is not None and old.key_hash and new.key_hash != old.key_hash:
        # Whoever holds another key is not this node: it may not take the node's place.
        return Result.fail(f"node {old.name} ({old.id}) is registered with another key", 409)
    if cmd.join is not None and (refused := _admit_join(state, cmd.join)) is not None:
        return refused
    if old is not None and not cmd.reclaim:
        new = dataclasses.replace(
            new,
            role=old.role,
            availability=old.availability,
            labels=old.labels,
            status=old.status,
            joined_at=old.joined_at,
            status_changed_at=old.status_changed_at,
        )
    table[new.id] = new
    for hook in NODE_REGISTERED:
        hook(state, new.id)
    return Result(True, value=new.id)


def _get(state: ClusterState, node_id: str) -> Node | Result:
    node = nodes(state).get(node_id)
    return node if node is not None else Result.fail(f"no such node {node_id!r}", 404)


@handles(UpdateNode)
def _update(state: ClusterState, cmd: UpdateNode) -> Result:
    node = _get(state, cmd.node_id)
    if isinstance(node, Result):
        return node
    labels = {k: v for k, v in node.labels.items() if k not in cmd.remove_labels}
    labels.update(cmd.set_labels)
    node = dataclasses.replace(
        node, labels=labels, availability=cmd.availability or node.availability
    )
    nodes(state)[node.id] = node
    return Result(True)


@handles(SetNodeRole)
def _role(state: ClusterState, cmd: SetNodeRole) -> Result:
    node = _get(state, cmd.node_id)
    if isinstance(node, Result):
        return node
    nodes(state)[node.id] = dataclasses.replace(node, role=cmd.role)
    return Result(True)


@handles(SetNodeStatus)
def _status(state: ClusterState, cmd: SetNodeStatus) -> Result:
    node = _get(state, cmd.node_id)
    if isinstance(node, Result):
        return node
    if node.status != cmd.status:
        nodes(state)[node.id] = dataclasses.replace(
            node, status=cmd.status, status_changed_at=cmd.at
        )
    return Result(True)


@handles(SetNodeResources)
def _resources(state: ClusterState, cmd: SetNodeResources) -> Result:
    node = _get(state, cmd.node_id)
    if isinstance(node, Result):
        return node
    nodes(state)[node.id] = dataclasses.replace(node, resources=cmd.resources, runtime=cmd.runtime)
    return Result(True)


@handles(RemoveNode)
def _remove(state: ClusterState, cmd: RemoveNode) -> Result:
    if nodes(state).pop(cmd.node_id, None) is None:
        return Result.fail(f"no such node {cmd.node_id!r}", 404)
    for hook in NODE_REMOVED:
        hook(state, cmd.node_id)
    return Result(True)


@handles(SetStrategy)
def _strategy(state: ClusterState, cmd: SetStrategy) -> Result:
    match cmd.strategy:
        case "spread" | "binpack" as strategy:
            state.cluster = dataclasses.replace(state.cluster, strategy=strategy)
            return Result(True)
    return Result.fail(f"strategy must be 'spread' or 'binpack', not {cmd.strategy!r}", 400)


def may_speak_raft(known: Mapping[str, Node], node_id: str, claimed: str) -> bool:
    """Whether node `node_id` (as its certificate names it) may open a Raft connection that
    claims to be `claimed`: a Raft address, or "readonly" for a member's replica. A known node
    speaks only as its own address, and no node as another known node's. A node this replica
    does not know yet (its registration not yet applied here) is let through: pysyncobj
    itself refuses an address that is not one of its partners."""
    if claimed == "readonly":
        return True
    node = known.get(node_id)
    if node is not None:
        return node.raft_address == claimed
    return all(other.raft_address != claimed for other in known.values())
