"""Overlay networks in the replicated state: the networks, each node's lease in each of them
and each service's virtual IP on each network it joins, all given out inside `apply` by the
pure allocator in `consensus.ipam`.

A network leases a block of its task range to every node (when the network is made, and when
a node registers later); a removed node's leases return. A service gets a VIP on every
network its spec names when it is created or updated, and gives it back when it leaves the
network or is deleted. Nothing here reads a clock or draws a random number.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from consensus import ipam
from consensus.codec import command
from consensus.nodes import NODE_REGISTERED, NODE_REMOVED, nodes
from consensus.services import ServiceSpec
from consensus.state import ClusterState, Result, handles, register_table
from consensus.tasks import SERVICE_CHANGED, SPEC_CHECKS, services

NETWORKS = "networks"
_NAME = re.compile(r"[a-z0-9]([a-z0-9_-]{0,30}[a-z0-9])?")
MAX_NETWORKS = 1024


@dataclass(frozen=True, slots=True)
class Network:
    id: str
    name: str
    subnet: str
    vni: int
    lease_prefix: int = ipam.DEFAULT_LEASE_PREFIX
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    # node id -> that node's block of the task range
    leases: dict[str, str] = field(default_factory=dict)
    # service name -> its virtual IP on this network
    vips: dict[str, str] = field(default_factory=dict)
    # VXLAN between nodes in IPsec ESP (netoverlay.overlay.ipsec); the epoch of its keys,
    # bumped by a rotation, and when that was.
    encrypted: bool = False
    key_epoch: int = 0
    key_rotated_at: float = 0.0

    @property
    def tasks_range(self) -> str:
        return str(ipam.tasks_range(self.subnet))


register_table(NETWORKS, Network)


def networks(state: ClusterState) -> dict[str, Network]:
    """Networks by name."""
    return state.table(NETWORKS)


@command("network.create")
@dataclass(frozen=True, slots=True)
class CreateNetwork:
    id: str
    name: str
    at: float
    # Empty: the lowest free /20 of the cluster's range.
    subnet: str = ""
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    encrypted: bool = False


@command("network.rotate_key")
@dataclass(frozen=True, slots=True)
class RotateNetworkKey:
    name: str
    at: float


@command("network.remove")
@dataclass(frozen=True, slots=True)
class RemoveNetwork:
    name: str


def network_name_problem(name: str) -> str | None:
    if not _NAME.fullmatch(name):
        return (
            f"{name!r} is not a network name: 1-32 lowercase letters, digits, '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return None


def _lease_everyone(state: ClusterState, network: Network) -> Network:
    leases = dict(network.leases)
    for node_id in sorted(nodes(state)):
        if node_id not in leases:
            lease = ipam.next_lease(network.subnet, leases.values(), network.lease_prefix)
            if lease is None:  # a full network: that node's tasks cannot join it (reported there)
                break
            leases[node_id] = lease
    return dataclasses.replace(network, leases=leases)


@handles(CreateNetwork)
def _create(state: ClusterState, cmd: CreateNetwork) -> Result:
    problem = network_name_problem(cmd.name)
    if problem:
        return Result.fail(f"name: {problem}", 400)
    table = networks(state)
    existing = table.get(cmd.name)
    if existing is not None:
        if existing.id == cmd.id:
            return Result(True, value={"id": existing.id, "subnet": existing.subnet})
        return Result.fail(f"name: network {cmd.name!r} already exists", 409)
    if len(table) >= MAX_NETWORKS:
        return Result.fail(f"name: the cluster already has {MAX_NETWORKS} networks", 409)
    taken = [n.subnet for n in table.values()]
    try:
        if cmd.subnet:
            subnet = ipam.check_subnet(cmd.subnet)
            clash = ipam.overlapping(subnet, taken)
            if clash is not None:
                owner = next(n.name for n in table.values() if n.subnet == clash)
                return Result.fail(f"subnet: {subnet} overlaps network {owner!r} ({clash})", 409)
        else:
            subnet = ipam.next_network_subnet(
                state.cluster.overlay_cidr or ipam.DEFAULT_CLUSTER_CIDR, taken
            )
        vni = ipam.next_vni([n.vni for n in table.values()])
    except ipam.IpamError as exc:
        return Result.fail(str(exc), 400 if cmd.subnet else 409)
    network = Network(
        cmd.id,
        cmd.name,
        subnet,
        vni,
        internal=cmd.internal,
        attachable=cmd.attachable,
        labels=dict(cmd.labels),
        created_at=cmd.at,
        encrypted=cmd.encrypted,
    )
    # No service names it yet: a spec naming a missing network is refused.
    network = _lease_everyone(state, network)
    table[cmd.name] = network
    return Result(True, value={"id": network.id, "subnet": network.subnet})


@handles(RotateNetworkKey)
def _rotate_key(state: ClusterState, cmd: RotateNetworkKey) -> Result:
    network = networks(state).get(cmd.name)
    if network is None:
        return Result.fail(f"no such network {cmd.name!r}", 404)
    if not network.encrypted:
        return Result.fail(
            f"name: network {cmd.name!r} is not encrypted: it has no keys to rotate", 409
        )
    networks(state)[cmd.name] = dataclasses.replace(
        network, key_epoch=network.key_epoch + 1, key_rotated_at=cmd.at
    )
    return Result(True, value={"key_epoch": network.key_epoch + 1})


@handles(RemoveNetwork)
def _remove(state: ClusterState, cmd: RemoveNetwork) -> Result:
    network = networks(state).get(cmd.name)
    if network is None:
        return Result.fail(f"no such network {cmd.name!r}", 404)
    users = sorted(name for name, spec in _service_specs(state) if cmd.name in joined(spec))
    if users:
        return Result.fail(
            f"network {cmd.name!r} is in use by service(s) {', '.join(users)}: "
            "remove them from it first",
            409,
        )
    del networks(state)[cmd.name]
    return Result(True, value={"id": network.id})


# -- hooks called by the modules that own nodes and services ------------------------------


def lease_node(state: ClusterState, node_id: str) -> None:
    """A node registered: give it a lease on every network that has none for it."""
    table = networks(state)
    for name in sorted(table):
        if node_id not in table[name].leases:
            table[name] = _lease_everyone(state, table[name])


def release_node(state: ClusterState, node_id: str) -> None:
    """A node was removed: its leases return to their networks."""
    table = networks(state)
    for name in sorted(table):
        network = table[name]
        if node_id in network.leases:
            leases = {k: v for k, v in network.leases.items() if k != node_id}
            table[name] = dataclasses.replace(network, leases=leases)


def joined(spec: ServiceSpec) -> tuple[str, ...]:
    """The networks a service spec names."""
    return tuple(attachment.name for attachment in spec.networks)


def _service_specs(state: ClusterState) -> list[tuple[str, ServiceSpec]]:
    return [(name, service.spec) for name, service in services(state).items()]


def service_changed(state: ClusterState, service_name: str) -> None:
    """A service was created, updated or deleted: it gets the lowest free VIP of each network
    it joined, and gives back the VIP of each network it left (all of them when it is deleted
    or turns `dnsrr`). A full VIP range gives none (its name then answers with its tasks'
    addresses)."""
    service = services(state).get(service_name)
    wanted: set[str] = set()
    if service is not None and service.spec.endpoint_mode == "vip":
        wanted = set(joined(service.spec))
    table = networks(state)
    for name in sorted(table):
        network = table[name]
        has = service_name in network.vips
        if (name in wanted) == has:
            continue
        vips = {k: v for k, v in network.vips.items() if k != service_name}
        if not has:
            vip = ipam.next_vip(network.subnet, vips.values())
            if vip is None:
                continue
            vips[service_name] = vip
        table[name] = dataclasses.replace(network, vips=vips)


def missing_networks(state: ClusterState, spec: ServiceSpec) -> Result | None:
    """A spec check: every network a service names must exist."""
    table = networks(state)
    for i, name in enumerate(joined(spec)):
        if name not in table:
            return Result.fail(
                f"networks[{i}]: no such network {name!r}: create it first "
                f"(shoal network create {name})",
                400,
            )
    return None


NODE_REGISTERED.append(lease_node)
NODE_REMOVED.append(release_node)
SERVICE_CHANGED.append(service_changed)
SPEC_CHECKS.append(missing_networks)
