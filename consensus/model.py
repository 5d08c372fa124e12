"""The replicated data model: what the cluster state holds about nodes and the cluster itself.

Frozen dataclasses, built-in field types only, so that they convert to plain values for
msgpack (Raft log, snapshots) and JSON (the API) through `consensus.wire`.
Services and tasks live in `consensus.services` beside the commands that change them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

NodeRole = Literal["voter", "member"]
# "joining": registered, still receiving the cluster's state; it becomes "ready" when gossip
# first sees it alive, which it can only once it has caught up (it starts gossip then).
NodeStatus = Literal["joining", "ready", "down"]
Availability = Literal["active", "pause", "drain"]

# The voter set never grows past this: Raft's write cost grows with every voter.
MAX_VOTERS = 5


@dataclass(frozen=True, slots=True)
class Resources:
    """Capacity of a node or a task's reservation. CPU in millicores, memory in bytes."""

    cpu_millis: int = 0
    memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    name: str
    address: str
    api_port: int
    raft_port: int
    gossip_port: int
    role: NodeRole = "member"
    status: NodeStatus = "ready"
    availability: Availability = "active"
    labels: dict[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    runtime: str = "process"
    joined_at: float = 0.0
    status_changed_at: float = 0.0
    # SHA-256 (hex) of the node's own key: other nodes check a call claiming to come from
    # this node against it (the key itself never leaves the node's data dir but in calls).
    key_hash: str = ""

    @property
    def raft_address(self) -> str:
        return f"{self.address}:{self.raft_port}"

    @property
    def api_address(self) -> str:
        return f"{self.address}:{self.api_port}"


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    cluster_id: str = ""
    created_at: float = 0.0
    # Placement strategy for the scheduler: "spread" (default) or "binpack".
    strategy: Literal["spread", "binpack"] = "spread"
    # Where overlay networks take their subnets from; empty: consensus.ipam's default.
    overlay_cidr: str = ""
    # The cluster CA: the certificates nodes trust (PEM, the current one first; a list so a
    # rotation can trust two roots at once) and the current one's key, sealed with the
    # cluster secret, so that any node holding the state can sign a node's certificate.
    ca_certificates: tuple[str, ...] = ()
    ca_key_sealed: bytes = b""
    # After a rotation: the current root signed by the one before, which nodes present after
    # their own certificate so that peers still trusting only the old root verify them.
    ca_cross_signed: str = ""
    # Which join token is valid: rotating it moves to the next, and the older stop working.
    join_generation: int = 0


def target_voter_count(eligible_nodes: int) -> int:
    """The largest odd number <= MAX_VOTERS that `eligible_nodes` allows (at least 1)."""
    n = max(1, min(MAX_VOTERS, eligible_nodes))
    return n if n % 2 == 1 else n - 1
