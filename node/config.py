"""A node's configuration and identity, remembered in its data dir.

A restarted node needs only `--data-dir`: the flags it was started with, its id, its Raft
role and the cluster's keys are read back from `DATA_DIR/node.json` (mode 0600, it holds the
cluster secret) and `DATA_DIR/join-token`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # `shoal node --help` reads the defaults below without loading these
    from node.security import ClusterKeys, NodeCredentials

CONFIG_FILE = "node.json"
TOKEN_FILE = "join-token"
# The layout of a data dir this version writes, recorded in node.json with the version that
# wrote it; a node refuses a data dir of a newer layout rather than misread it.
DATA_DIR_FORMAT = 1


class DataDirError(ValueError):
    """A data dir this node cannot start on: the message says why and what to do."""


def shoal_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("shoal")
    except importlib.metadata.PackageNotFoundError:
        return "0"


# How long a node's certificate is valid (it is renewed at two thirds of that).
CERT_LIFETIME = 90 * 86400.0


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    data_dir: str
    advertise: str = "127.0.0.1"
    api_port: int = 7420
    raft_port: int = 7421
    gossip_port: int = 7422
    dns_port: int = 7423
    labels: dict[str, str] = field(default_factory=dict)
    runtime: str = "auto"
    # Seconds a voter may stay down before autopilot replaces it.
    voter_grace: float = 60.0
    # Explicit capacity overrides; 0 means "fingerprint the machine".
    cpus_millis: int = 0
    memory_bytes: int = 0
    # Where task ports are published when not on `advertise`: a node in a container that
    # drives the host's Docker Engine cannot have it bind the container's own address.
    publish_address: str = ""
    # "missing": pull an image a task needs when the node lacks it; "never": air-gapped.
    image_pull: str = "missing"
    # Where published ingress ports listen (the routing mesh); empty means `advertise`.
    ingress_address: str = ""
    # The routing mesh's data plane: "proxy" (asyncio, everywhere), "nft" (kernel DNAT, root)
    # or "auto" (nft where it works).
    lb_dataplane: Literal["auto", "nft", "proxy"] = "proxy"
    # The proxy's worker processes, each accepting on every published port (SO_REUSEPORT);
    # 0 runs the proxy in the node's own event loop.
    lb_workers: int = 0
    # Seconds between this node's load reports for autoscaling.
    metrics_interval: float = 5.0
    # Raft compacts its log into a snapshot once it holds this many entries and this many
    # seconds have passed since the last snapshot (pysyncobj's logCompactionMin*).
    snapshot_entries: int = 5000
    snapshot_interval: float = 60.0
    # Cluster snapshots (consensus.snapshot) kept in DATA_DIR/snapshots, one written every
    # snapshot_interval; 0: none.
    snapshot_keep: int = 0
    # Take part in the overlay networks (needs root, the Docker runtime and one node per
    # network namespace): a bridge and a VXLAN device per network, VIP rules, container DNS.
    overlay: bool = False
    vxlan_port: int = 4789
    # Where container DNS forwards names outside the cluster; empty: /etc/resolv.conf's.
    dns_upstreams: tuple[str, ...] = ()
    # The range overlay networks take their subnets from, fixed when the cluster is made
    # (read by the first node only); empty: consensus.ipam's default.
    overlay_cidr: str = ""
    # Host names the API answers to besides IP addresses, `localhost` and the machine's name
    # (a Host header naming anything else may come from a DNS-rebinding web page).
    api_hosts: tuple[str, ...] = ()
    # The user process-runtime tasks run as ("": nobody when the node runs as root), and
    # whether a task may bind-mount a host path.
    task_user: str = ""
    host_binds: bool = True
    # Seconds this node's certificates are valid (shorter only to see renewal happen).
    cert_lifetime: float = CERT_LIFETIME

    @property
    def raft_address(self) -> str:
        return f"{self.advertise}:{self.raft_port}"

    @property
    def api_address(self) -> str:
        return f"{self.advertise}:{self.api_port}"

    @property
    def host_names(self) -> tuple[str, ...]:
        return ("localhost", socket.gethostname(), *self.api_hosts)

    @property
    def ingress_host(self) -> str:
        return self.ingress_address or self.advertise

    @property
    def task_address(self) -> str:
        """The address task ports are published on, and reached at from other nodes."""
        return self.publish_address or self.advertise


@dataclass(frozen=True, slots=True)
class Identity:
    """What the node learned when it bootstrapped or joined a cluster."""

    node_id: str
    cluster_id: str
    secret_hex: str
    role: str = "member"
    # Raft addresses of the voters last seen; where a restarted node looks for its cluster.
    voters: tuple[str, ...] = ()
    # The node's own key (hex): calls between nodes carry it, and its hash is in the node's
    # record, so no other node and no API token holder can act as this node.
    node_key: str = ""
    # API addresses of the voters last seen: whom a restarted node asks about its cluster
    # while its replica, which applies nothing before it hears a leader, knows no one.
    voter_apis: tuple[str, ...] = ()

    @property
    def keys(self) -> ClusterKeys:
        from node.security import ClusterKeys

        return ClusterKeys(self.cluster_id, bytes.fromhex(self.secret_hex))

    @property
    def credentials(self) -> NodeCredentials:
        from node.security import NodeCredentials

        return NodeCredentials(self.node_id, self.node_key)


@dataclass(frozen=True, slots=True)
class Stored:
    config: NodeConfig
    identity: Identity | None = None


def new_node_id() -> str:
    return secrets.token_hex(6)


def new_node_key() -> str:
    return secrets.token_hex(32)


def load(data_dir: str) -> Stored | None:
    path = os.path.join(data_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    from consensus.wire import from_plain

    try:
        with open(path) as f:
            raw = json.load(f)
        stored = from_plain(Stored, raw, strict=False)
    except ValueError as exc:  # JSON's and the wire checks' errors
        raise DataDirError(
            f"{path} does not read ({exc}): restore the data dir from a backup, "
            f"or start on an empty one and join the cluster again"
        ) from None
    written = raw.get("data_dir_format", 1)
    if not isinstance(written, int) or written > DATA_DIR_FORMAT:
        raise DataDirError(
            f"{data_dir} was written by Shoal {raw.get('written_by', '?')} "
            f"(data dir format {written}), newer than this Shoal "
            f"{shoal_version()} reads (format {DATA_DIR_FORMAT}): run that "
            f"version or newer, or start on an empty data dir"
        )
    # The data dir may have moved since the node was first started.
    return dataclasses.replace(stored, config=dataclasses.replace(stored.config, data_dir=data_dir))


# What the node keeps private in its data dir: its own files (Raft journal and dump, node.json,
# the join token, task records and logs). Task working directories and volumes belong to
# the tasks and keep the modes their tasks gave them.
_PRIVATE_TREES = ("raft",)


def secure_data_dir(data_dir: str) -> None:
    """Make the data dir 0700 and the node's own files in it 0600 (dirs 0700), also when an
    older version left them readable. New files are private by the node's umask (077)."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    os.chmod(data_dir, 0o700)
    for entry in os.scandir(data_dir):
        if entry.is_file(follow_symlinks=False):
            os.chmod(entry.path, 0o600)
        elif entry.name in _PRIVATE_TREES and entry.is_dir(follow_symlinks=False):
            for root, _dirs, files in os.walk(entry.path):
                os.chmod(root, 0o700)
                for name in files:
                    os.chmod(os.path.join(root, name), 0o600)


def save(stored: Stored) -> None:
    data_dir = stored.config.data_dir
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    path = os.path.join(data_dir, CONFIG_FILE)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        from consensus.wire import to_plain

        json.dump(
            {**to_plain(stored), "data_dir_format": DATA_DIR_FORMAT, "written_by": shoal_version()},
            f,
            indent=2,
            sort_keys=True,
        )
    os.replace(tmp, path)


def write_token(data_dir: str, token: str) -> str:
    """Write the join token file (0600); a reader sees the old token or the new one whole."""
    path = os.path.join(data_dir, TOKEN_FILE)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return path
