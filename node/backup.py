"""Cluster snapshots (consensus.snapshot) taken, kept, and started from.

- `take`: the served state at its applied index, copied under the replica's lock and
  serialised outside it, with a header sealed by the cluster's keys.
- `keep`: a snapshot written into DATA_DIR/snapshots (0700; files 0600), only the newest N kept.
- `restore`: a fresh data dir made into the only voter of a NEW cluster holding a snapshot's
  state. The new cluster gets a new id and secret (a new join token): the snapshot file
  alone carries no key (a backup stolen from its storage gives ciphertext only), and old
  nodes, old data dirs and old tokens can never reach the new cluster (different Raft and
  API keys) or be taken for it (a data dir of the old cluster is refused as another
  cluster's). The old cluster's recovery key must be given: it proves the restorer held the
  old cluster (the header's seal) and opens its secrets, which are sealed again under the
  new secret before the state is written. The new cluster has a new CA too: the old one's
  key is sealed with the old secret, and nodes of the old cluster must not be trusted.
- `force_new_cluster`: a voter's own files rebuilt into the only voter of its cluster (same
  id, same secret), the old files moved aside.
In both, this node keeps its id when the state knows its name (so it adopts the tasks still
running on its machine); the other nodes become members. After a restore they are
`joining`: they keep their tasks, get no new ones, and turn ready when they rejoin (with
the new token, under the same name and address they take their place back); after a forced
new cluster they are `down`, since their voters are lost, and their tasks are replaced.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

from consensus import raft_files
from consensus.gossip_keys import GOSSIP_KEYS
from consensus.model import Node, Resources
from consensus.nodes import NODES, nodes
from consensus.raft import RaftNode
from consensus.secrets import TABLES as BLOB_TABLES
from consensus.snapshot import (
    FORMAT,
    SnapshotError,
    SnapshotHeader,
    digest,
    read_header,
    read_payload,
)
from consensus.state import ClusterState, PlainState
from node import config as cfg
from node.config import Identity, NodeConfig, Stored
from node.pki import store as pki_store
from node.pki.authority import create_authority, fingerprint
from node.pki.cluster_ca import founding_node_tls, seal_ca_key
from node.raft_gate import seal_tls_only
from node.secret_box import SecretBox
from node.security import ClusterKeys, TokenError, key_hash

SNAPSHOTS_DIR = "snapshots"
_SUFFIX = ".snap"


class RecoveryError(ValueError):
    """A restore or forced new cluster that cannot go ahead: the message says why and what
    to do instead."""


# -- taking and keeping ---------------------------------------------------------------
def capture(raft: RaftNode) -> tuple[ClusterState, int]:
    """A detached copy of the served state and the Raft term it was read in."""
    with raft.view() as state:
        copy = state.detached()
    return copy, raft.status().term


def encode(
    state: ClusterState, keys: ClusterKeys, term: int, created_at: float
) -> tuple[bytes, bytes]:
    """The header and the payload of a snapshot of `state` (slow for a large state: call it
    in a thread)."""
    payload = state.to_msgpack()
    sha = digest(payload)
    header = SnapshotHeader(
        FORMAT,
        keys.cluster_id,
        cfg.shoal_version(),
        state.applied,
        term,
        created_at,
        len(payload),
        sha,
        keys.snapshot_seal(sha),
    )
    return header.encode(), payload


def keep(data_dir: str, header: bytes, payload: bytes, index: int, how_many: int) -> str:
    """Write a snapshot into DATA_DIR/snapshots and remove all but the newest `how_many`."""
    folder = os.path.join(data_dir, SNAPSHOTS_DIR)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{index:012d}{_SUFFIX}"
    path = os.path.join(folder, name)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(header)
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in kept(data_dir)[:-how_many]:
        os.unlink(old)
    return path


def kept(data_dir: str) -> list[str]:
    """The snapshots in DATA_DIR/snapshots, oldest first."""
    folder = os.path.join(data_dir, SNAPSHOTS_DIR)
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(_SUFFIX))
    except FileNotFoundError:
        return []
    return [os.path.join(folder, n) for n in names]


def read(path: str) -> tuple[SnapshotHeader, bytes]:
    """A snapshot file's header and payload, the payload checked against the header."""
    with open(path, "rb") as f:
        header = read_header(f)
        return header, read_payload(f, header)


# -- starting from a state ------------------------------------------------------------
def _seat_alone(table: dict[str, Node], me: Node, others_status: str, now: float) -> None:
    """Make `me` the only voter, ready; every other node a member with `others_status`."""
    for node in list(table.values()):
        if node.id != me.id:
            changed = node.status != others_status
            table[node.id] = dataclasses.replace(
                node,
                role="member",
                status=others_status,
                status_changed_at=now if changed else node.status_changed_at,
            )
    table[me.id] = dataclasses.replace(me, role="voter", status="ready", status_changed_at=now)


def _write_raft(config: NodeConfig, state: ClusterState | PlainState) -> None:
    raft_dir = os.path.join(config.data_dir, "raft")
    os.makedirs(raft_dir, mode=0o700, exist_ok=True)
    raft_files.write_dump(
        raft_files.dump_path(raft_dir, "voter"), state.to_msgpack(), config.raft_address
    )


def fresh_data_dir_problem(data_dir: str) -> str | None:
    """Why `data_dir` is not fresh for a restore (task records of this machine may stay:
    they are what the restored node adopts)."""
    for name in (cfg.CONFIG_FILE, "raft"):
        if os.path.exists(os.path.join(data_dir, name)):
            return (
                f"--restore needs a fresh data dir, and {data_dir} already holds a node "
                f"({name}): give an empty --data-dir, or move this one aside"
            )
    return None


def restore(config: NodeConfig, snapshot_path: str, recovery_key: str) -> Stored:
    """Make `config.data_dir` the only voter of a new cluster holding the snapshot's state."""
    problem = fresh_data_dir_problem(config.data_dir)
    if problem:
        raise RecoveryError(problem)
    try:
        old_keys = ClusterKeys.from_recovery_key(recovery_key)
    except TokenError as exc:
        raise RecoveryError(f"--recovery-key: {exc}") from None
    try:
        header, payload = read(snapshot_path)
    except (OSError, SnapshotError, ValueError) as exc:
        raise RecoveryError(f"--restore {snapshot_path}: {exc}") from None
    if header.cluster_id != old_keys.cluster_id or not old_keys.check_snapshot_seal(
        header.sha256, header.seal
    ):
        raise RecoveryError(
            f"--recovery-key is not the recovery key of cluster {header.cluster_id}, "
            f"which the snapshot was taken from (its secrets are sealed with "
            f"that cluster's secret): give that cluster's key"
        )
    try:
        state = PlainState(payload)
    except ValueError as exc:
        raise RecoveryError(f"--restore {snapshot_path}: {exc}") from None
    keys = ClusterKeys.generate()
    old_box, new_box = SecretBox(old_keys.secret), SecretBox(keys.secret)
    secrets = state.rows(BLOB_TABLES["secret"])
    state.set_rows(
        BLOB_TABLES["secret"],
        {
            name: dataclasses.replace(blob, data=new_box.seal(name, old_box.open(name, blob.data)))
            for name, blob in secrets.items()
        },
    )
    # The old cluster's gossip keys stay with it, as its Raft and API keys do: the new
    # cluster gossips under the key of its own secret until it rotates.
    state.set_rows(GOSSIP_KEYS, {})
    now = time.time()
    authority = create_authority(keys.cluster_id, now)
    state.cluster = dataclasses.replace(
        state.cluster,
        cluster_id=keys.cluster_id,
        ca_certificates=(authority.cert_pem.decode(),),
        ca_key_sealed=seal_ca_key(keys, authority.key_pem),
        ca_cross_signed="",
        join_generation=0,
    )
    node_key = cfg.new_node_key()
    table = state.rows(NODES)
    old = next((n for n in table.values() if n.name == config.name), None)
    me = Node(
        id=old.id if old else cfg.new_node_id(),
        name=config.name,
        address=config.advertise,
        api_port=config.api_port,
        raft_port=config.raft_port,
        gossip_port=config.gossip_port,
        labels=dict(old.labels if old else config.labels),
        resources=old.resources if old else Resources(),
        runtime=old.runtime if old else "process",
        joined_at=old.joined_at if old else time.time(),
        key_hash=key_hash(node_key),
    )
    _seat_alone(table, me, "joining", time.time())
    state.set_rows(NODES, table)
    os.makedirs(config.data_dir, mode=0o700, exist_ok=True)
    _write_raft(config, state)
    identity = Identity(
        me.id, keys.cluster_id, keys.secret.hex(), "voter", (config.raft_address,), node_key
    )
    pki_store.save(config.data_dir, founding_node_tls(authority, me.id, config, now))
    seal_tls_only(config.data_dir)  # a new cluster: every node speaks TLS Raft
    stored = Stored(config, identity)
    cfg.save(stored)
    cfg.write_token(config.data_dir, str(keys.join_token(fingerprint(authority.cert_pem), 0)))
    return stored


def force_new_cluster(stored: Stored) -> Stored:
    """Make a voter's data dir the only voter of its cluster, keeping everything its log
    holds. Its old Raft files are kept beside, in raft.before-force-new-cluster-TIME."""
    identity = stored.identity
    config = stored.config
    if identity is None:
        raise RecoveryError(
            f"--force-new-cluster needs the data dir of a node of the cluster, "
            f"and {config.data_dir} holds none"
        )
    if identity.role != "voter":
        raise RecoveryError(
            f"--force-new-cluster runs on a voter, and this node is a "
            f"{identity.role}: start it on a surviving voter's data dir"
        )
    raft_dir = os.path.join(config.data_dir, "raft")
    try:
        state = raft_files.replay(raft_dir, "voter")
    except (OSError, raft_files.RaftFileError) as exc:
        raise RecoveryError(
            f"--force-new-cluster: this node's Raft files do not read ({exc}); "
            f"restore a snapshot instead (--restore)"
        ) from None
    me = nodes(state).get(identity.node_id)
    if me is None:
        raise RecoveryError(
            f"--force-new-cluster: this node ({identity.node_id}) is not in "
            f"the state its log holds; restore a snapshot instead (--restore)"
        )
    _seat_alone(nodes(state), me, "down", time.time())
    shutil.move(raft_dir, f"{raft_dir}.before-force-new-cluster-{int(time.time())}")
    _write_raft(config, state)
    stored = Stored(
        config, dataclasses.replace(identity, voters=(config.raft_address,), voter_apis=())
    )
    cfg.save(stored)
    return stored
