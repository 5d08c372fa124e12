"""The gossip keyring in the replicated state: the keys gossip accepts, and the one it uses.

As memberlist's keyring (`consul keyring -install/-use/-remove`): every key of the ring opens
a packet, the primary one seals it. A key goes in (`gossip_key.install`), becomes primary
once every node holds it (`gossip_key.use`), and the one before leaves the ring after a grace
period (`gossip_key.remove`); the node drives that sequence, this module only keeps the ring
consistent: once a ring exists it has exactly one primary key, which cannot be removed.

A row holds the key sealed by the node that installed it (node.secret_box, under a key
derived from the cluster secret): the Raft log, snapshots and data dirs never hold a gossip
key in clear, and `apply` never sees one. A row with no sealed data stands for the key every
cluster starts with, derived from the cluster secret itself: the ring's first row when a
cluster that never rotated rotates for the first time. An empty ring means that key alone.
The commands are written only once every node speaks protocol.GOSSIP_KEYRING.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from consensus.codec import command
from consensus.secrets import SEAL_OVERHEAD
from consensus.state import ClusterState, Result, handles, register_table

GOSSIP_KEYS = "gossip_keys"
# A ring is a few keys during a rotation; a bound keeps a runaway caller from growing it.
MAX_KEYS = 8
KEY_BYTES = 32
SEALED_BYTES = SEAL_OVERHEAD + KEY_BYTES
_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True, slots=True)
class GossipKey:
    id: str  # the key's fingerprint (netoverlay.gossip.keyring.key_id), never the key
    sealed: bytes = field(repr=False)  # empty: the key derived from the cluster secret
    installed_at: float = 0.0
    primary: bool = False


register_table(GOSSIP_KEYS, GossipKey)


def gossip_keys(state: ClusterState) -> dict[str, GossipKey]:
    """The ring's keys by id."""
    return state.table(GOSSIP_KEYS)


def primary_key(state: ClusterState) -> GossipKey | None:
    """The key gossip seals with; None while the ring is empty (the derived key alone)."""
    return next((k for k in gossip_keys(state).values() if k.primary), None)


@command("gossip_key.install")
@dataclass(frozen=True, slots=True)
class InstallGossipKey:
    """Add a key the nodes accept; the first key of a ring becomes its primary one."""

    key: GossipKey


@command("gossip_key.use")
@dataclass(frozen=True, slots=True)
class UseGossipKey:
    """Make an installed key the one every node seals with."""

    id: str


@command("gossip_key.remove")
@dataclass(frozen=True, slots=True)
class RemoveGossipKey:
    """Take a key out of the ring: packets sealed with it are refused from then on."""

    id: str


def key_problem(key: GossipKey) -> tuple[str, str] | None:
    """(field, what is wrong) with a key row, or None."""
    if not isinstance(key.id, str) or not _ID.fullmatch(key.id):
        return "id", "must be 16 hex digits (the key's fingerprint)"
    if key.sealed and len(key.sealed) != SEALED_BYTES:
        return "sealed", (
            f"must be a sealed {KEY_BYTES}-byte key ({SEALED_BYTES} bytes) or empty, "
            f"not {len(key.sealed)} bytes"
        )
    if key.installed_at < 0:
        return "installed_at", "must not be negative"
    return None


@handles(InstallGossipKey)
def _install(state: ClusterState, cmd: InstallGossipKey) -> Result:
    key, ring = cmd.key, gossip_keys(state)
    problem = key_problem(key)
    if problem is not None:
        return Result.fail(f"key.{problem[0]}: {problem[1]}", 400)
    if key.id in ring:
        return Result.fail(f"key.id: gossip key {key.id} is installed already", 409)
    if not key.sealed and ring:
        return Result.fail(
            "key.sealed: the key derived from the cluster secret can only be the ring's first",
            409,
        )
    if len(ring) >= MAX_KEYS:
        return Result.fail(
            f"the gossip keyring holds at most {MAX_KEYS} keys: remove some first", 409
        )
    ring[key.id] = replace(key, primary=not ring)
    return Result(True, value=key.id)


def _installed(state: ClusterState, key_id: str) -> GossipKey | Result:
    key = gossip_keys(state).get(key_id)
    if key is None:
        return Result.fail(f"id: no gossip key {key_id!r} in the keyring", 404)
    return key


@handles(UseGossipKey)
def _use(state: ClusterState, cmd: UseGossipKey) -> Result:
    key = _installed(state, cmd.id)
    if isinstance(key, Result):
        return key
    ring = gossip_keys(state)
    for other in list(ring.values()):
        if other.primary and other.id != key.id:
            ring[other.id] = replace(other, primary=False)
    if not key.primary:
        ring[key.id] = replace(key, primary=True)
    return Result(True, value=key.id)


@handles(RemoveGossipKey)
def _remove(state: ClusterState, cmd: RemoveGossipKey) -> Result:
    key = _installed(state, cmd.id)
    if isinstance(key, Result):
        return key
    if key.primary:
        return Result.fail(
            f"id: gossip key {key.id} is the primary one: make another primary first", 409
        )
    del gossip_keys(state)[key.id]
    return Result(True, value=key.id)
