"""Joining a cluster through any node's API.

The joining node first fetches the cluster's CA certificates and pins the one whose SHA-256
its token names: a node that cannot show that CA gets nothing but a question. Then, over
TLS verified against that CA, it sends its registration and a CSR, signed with the token's
join secret (an HMAC); the leader checks the signature, commits the new node as a
non-voting member that is `joining`, and answers with the voters to replicate from, the
node's certificate, the CAs to trust and the cluster secret. The node turns `ready` once it
has caught up and gossip sees it; the voter loop promotes it later if needed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack

from consensus import protocol
from consensus.model import Node, Resources
from consensus.nodes import JOIN_WINDOW, JoinTicket, RegisterNode, nodes, voters
from consensus.state import ClusterState
from consensus.wire import from_plain, to_plain
from node.api.http_util import HttpError, result_or_raise
from node.client import ApiError, ShoalClient, Unreachable
from node.config import NodeConfig
from node.control import ControlPlane
from node.pki import cluster_ca
from node.pki.authority import NODE_LIFETIME, CertificateError, csr_node_id, fingerprint, issued_by
from node.pki.contexts import client_context, unverified_context
from node.security import ClusterKeys, JoinToken, TokenError

log = logging.getLogger(__name__)

# How long `shoal node start --join` keeps asking a target that is not up yet.
JOIN_PATIENCE = 60.0


@dataclass(frozen=True, slots=True)
class JoinRequest:
    cluster_id: str
    node: Node
    proof: str = ""
    nonce: str = ""
    at: float = 0.0
    # The node's certificate signing request (PEM) and the certificate lifetime it asks for.
    csr: str = ""
    lifetime: float = NODE_LIFETIME

    def signed_payload(self) -> bytes:
        return msgpack.packb(
            [self.cluster_id, to_plain(self.node), self.nonce, self.at, self.csr, self.lifetime],
            use_bin_type=True,
        )

    def signed(self, token: JoinToken) -> JoinRequest:
        """Signed afresh, with a new nonce and the time: each attempt is a new request."""
        fresh = replace(self, nonce=secrets.token_hex(16), at=time.time())
        return replace(fresh, proof=token.proof(fresh.signed_payload()))


def outside_window(request: JoinRequest, now: float, window: float = JOIN_WINDOW) -> str | None:
    """Why a join signed at `request.at` is too old (or too far ahead) at `now`, if it is. Its
    nonce is checked where it is committed (consensus.nodes), so that every later leader
    remembers it too."""
    if abs(now - request.at) > window:
        return (
            f"join refused: it was signed {now - request.at:+.0f} s from now, outside "
            f"the {window:.0f} s window (replayed, or the clocks differ)"
        )
    return None


@dataclass(frozen=True, slots=True)
class JoinAccepted:
    node_id: str
    cluster_id: str
    voters: tuple[str, ...] = field(default_factory=tuple)
    # The cluster secret (hex), this node's certificate and the CAs to trust (PEM).
    secret_hex: str = ""
    certificate: str = ""
    ca_certificates: tuple[str, ...] = ()
    # The voters' API addresses, where a member follows the committed-state feed (a
    # release before the feed sends none). The address a node joined through may be a
    # proxy or a name for any node, so it serves only when these are missing.
    voter_apis: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterCa:
    """What `GET /v1/cluster/ca` answers, to anyone: public."""

    cluster_id: str
    certificates: tuple[str, ...]
    # The cluster's protocol level as the answering node knows it (a node of a release
    # before levels sends none: the lowest), and whether it heard every node.
    protocol: int = protocol.LOWEST
    protocol_exact: bool = True


class IncompatibleCluster(Exception):
    """This node's release cannot read the cluster's log (consensus.protocol.refusal)."""


def check_level(level: Any, exact: Any, where: str) -> None:
    """Raise IncompatibleCluster if this node cannot serve in a cluster of `level`, as
    `where` reported it (values from the network, checked here)."""
    reason = protocol.refusal(protocol.announced(level), exact=exact is not False)
    if reason is not None:
        raise IncompatibleCluster(f"{where}: {reason}")


class UntrustedCluster(TokenError):
    """The node asked to join does not hold the CA the token names."""


def pin(ca: ClusterCa, token: JoinToken, target: str) -> bytes:
    """The CA certificate (PEM) the token's digest names, or UntrustedCluster."""
    for pem in ca.certificates[:8]:
        try:
            if fingerprint(pem.encode()) == token.ca_digest:
                return pem.encode()
        except CertificateError:
            continue
    raise UntrustedCluster(
        f"join refused by this node: {target} does not present the cluster CA this token "
        f"names (SHA-256 {token.ca_digest[:16]}...); nothing was sent to it. Check the "
        "address, or get the current token with `shoal cluster token` on a member"
    )


async def _patiently(target: str, deadline: float, attempt):
    """`attempt()` until it answers; an unreachable target or one without a leader yet is
    asked again until `deadline`, a refusal is final at once."""
    delay = 0.2
    while True:
        try:
            return await attempt()
        except (Unreachable, ApiError) as exc:
            retryable = isinstance(exc, Unreachable) or exc.status == 503
            if not retryable or time.monotonic() + delay > deadline:
                raise
            log.info("join through %s not possible yet (%s); retrying", target, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def request_join(
    target: str,
    token: JoinToken,
    node: Node,
    csr: bytes,
    *,
    lifetime: float = NODE_LIFETIME,
    patience: float = JOIN_PATIENCE,
) -> JoinAccepted:
    """Client side: ask the cluster at `target` (HOST:APIPORT) to admit `node`. Machines are
    often started together, so an unreachable target or one without a leader yet is asked
    again for `patience` seconds; a refusal (wrong token, another CA) is final at once."""
    deadline = time.monotonic() + patience
    async with ShoalClient(target, timeout=20.0, ssl_context=unverified_context()) as client:
        raw = await _patiently(target, deadline, lambda: client.get("/v1/cluster/ca"))
    ca = from_plain(ClusterCa, raw, strict=False)
    pinned = pin(ca, token, target)
    check_level(ca.protocol, ca.protocol_exact, f"not joining through {target}")
    unsigned = JoinRequest(ca.cluster_id, node, csr=csr.decode(), lifetime=lifetime)
    # The target is checked by its chain to the pinned CA, not by name: it may be reached
    # through a name or address its certificate does not list.
    verified = client_context(pinned, check_hostname=False)
    async with ShoalClient(target, timeout=20.0, ssl_context=verified) as client:
        raw = await _patiently(
            target, deadline, lambda: client.post("/v1/join", to_plain(unsigned.signed(token)))
        )
    accepted = from_plain(JoinAccepted, raw, strict=False)
    # The answer came over TLS to the pinned CA: the roots it names are the cluster's (after
    # a rotation, a newer one that the pinned root cross-signed).
    roots = "".join(accepted.ca_certificates).encode()
    if pinned.decode() not in accepted.ca_certificates or not issued_by(
        accepted.certificate.encode(), roots
    ):
        raise UntrustedCluster(
            f"{target} answered the join with a certificate or CAs that do not match the pinned CA"
        )
    return accepted


async def accept_join(
    control: ControlPlane, keys: ClusterKeys, request: JoinRequest
) -> JoinAccepted:
    """Leader side: check the proof, the time and the nonce, commit the node as a member,
    answer with the voters, its certificate and the cluster secret."""
    with control.raft.view() as state:
        info = state.cluster
    if request.cluster_id != keys.cluster_id or not keys.check_join_proof(
        info.join_generation, request.signed_payload(), request.proof
    ):
        raise HttpError(
            403,
            "join refused: wrong or rotated join token for this cluster "
            "(get the current one with `shoal cluster token` on a member)",
        )
    now = time.time()
    stale = outside_window(request, now)
    if stale:
        raise HttpError(403, stale, "at")
    if len(request.node.key_hash) != 64:
        raise HttpError(
            400,
            "a joining node must register the hash of its own key (a node "
            "of an older version cannot join this cluster)",
            "node.key_hash",
        )
    try:
        if csr_node_id(request.csr.encode()) != request.node.id:
            raise HttpError(400, "the CSR names another node than the one joining", "csr")
        # Not ready yet: it has no state and runs nothing until it catches up (see liveness).
        node = replace(
            request.node,
            role="member",
            status="joining",
            availability="active",
            joined_at=now,
            status_changed_at=now,
        )
        with control.raft.view() as state:
            earlier = returning(state, node)
        if earlier is not None:
            node = replace(node, id=earlier.id)
            log.info("node %s joins again and takes back its id %s", node.name, earlier.id)
        # The certificate names the node as the cluster records it (a returning node's old id).
        certificate = cluster_ca.issue(
            info,
            keys,
            request.csr.encode(),
            node,
            lifetime=request.lifetime,
            now=now,
            csr_names=request.node.id,
        )
    except CertificateError as exc:
        raise HttpError(400, str(exc), "csr") from None
    except cluster_ca.NoAuthority as exc:
        raise HttpError(503, str(exc)) from None
    ticket = JoinTicket(request.nonce, request.at, now)
    result = await control.submit(RegisterNode(node, ticket, reclaim=earlier is not None))
    if not result.ok and result.code == 403:
        raise HttpError(403, result.error, "nonce")
    result_or_raise(result)
    with control.raft.view() as state:
        addresses = tuple(v.raft_address for v in voters(state))
        apis = tuple(v.api_address for v in voters(state))
    return JoinAccepted(
        node.id,
        keys.cluster_id,
        addresses,
        keys.secret.hex(),
        certificate.decode(),
        info.ca_certificates,
        apis,
    )


def returning(state: ClusterState, joining: Node) -> Node | None:
    """The node that `joining` was, when the cluster knows one of its name and address that
    is not ready (after a restore, or a machine whose data dir was lost): it takes that
    node's place, and so adopts the tasks still running on its machine."""
    for node in nodes(state).values():
        if (
            node.name == joining.name
            and node.address == joining.address
            and node.raft_port == joining.raft_port
            and node.status != "ready"
        ):
            return node
    return None


def local_node(
    node_id: str, config: NodeConfig, resources: Resources, runtime: str, key_hash: str
) -> Node:
    """This node's registration record from its config and fingerprint."""
    return Node(
        id=node_id,
        name=config.name,
        address=config.advertise,
        api_port=config.api_port,
        raft_port=config.raft_port,
        gossip_port=config.gossip_port,
        labels=dict(config.labels),
        resources=resources,
        runtime=runtime,
        key_hash=key_hash,
    )
