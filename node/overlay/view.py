"""What this node's overlay should be, from the replicated state and the gossip table: pure.

The state says which networks exist, this node's lease in each and every service's VIP; the
gossip table says where the healthy tasks are (each node announces its own tasks' overlay
addresses); the live members say which nodes to tunnel to. Each network is a Docker network
on every node (`shoal-NAME`), made on the node's lease, whose bridge the VXLAN device joins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consensus import ipam
from consensus.networks import Network, networks
from consensus.services import ServiceSpec
from consensus.state import ClusterState
from consensus.tasks import services
from consensus.wire import WireError, from_plain
from netoverlay.gossip.model import Member, MemberState, TableEntry
from netoverlay.overlay.types import NodeOverlay, OverlayNetwork, ServiceOnNetwork, VipPort
from node.mesh.announce import Announcement, task_of_key

DOCKER_PREFIX = "shoal-"


def docker_network(name: str) -> str:
    return DOCKER_PREFIX + name


def overlay_addresses(runtime_networks: Mapping[str, str]) -> dict[str, str]:
    """A task's addresses by overlay network, from its addresses by runtime network."""
    return {
        name[len(DOCKER_PREFIX) :]: address
        for name, address in runtime_networks.items()
        if name.startswith(DOCKER_PREFIX)
    }


@dataclass(frozen=True, slots=True)
class Seat:
    """Where this node's tasks join one network: the runtime network and the node's own
    address in it (their gateway and resolver)."""

    network: str
    runtime_network: str
    gateway: str


def seats(state: ClusterState, node_id: str) -> dict[str, Seat]:
    """The networks this node holds a lease in."""
    return {
        name: Seat(name, docker_network(name), ipam.lease_gateway(network.leases[node_id]))
        for name, network in networks(state).items()
        if node_id in network.leases
    }


def task_addresses(
    entries: Iterable[TableEntry], live: set[str], suspect: frozenset[str] = frozenset()
) -> dict[tuple[str, str], list[str]]:
    """(network, service) -> the overlay addresses of its healthy tasks, from the live nodes'
    announcements. A malformed entry is skipped (the routing mesh reports those). The tasks
    of a `suspect` node (a probe of it failed: most likely dead, its verdict a suspicion
    timeout away) are left out while the service has tasks elsewhere: a host's death costs
    a VIP the time to suspect it, not the time to be sure."""
    found: dict[tuple[str, str], list[str]] = {}
    doubtful: dict[tuple[str, str], list[str]] = {}
    for entry in entries:
        if entry.tombstone or entry.owner not in live or task_of_key(entry.key) is None:
            continue
        try:
            announced = from_plain(Announcement, entry.value, strict=False)
        except (WireError, ValueError):
            continue
        for network, address in announced.networks.items():
            into = doubtful if entry.owner in suspect else found
            into.setdefault((network, announced.service), []).append(address)
    for key, addresses in doubtful.items():
        found.setdefault(key, addresses)
    return found


def _network(
    network: Network,
    node_id: str,
    specs: Mapping[str, ServiceSpec],
    addresses: Mapping[tuple[str, str], list[str]],
) -> OverlayNetwork:
    lease = network.leases[node_id]
    members = []
    for name, spec in sorted(specs.items()):
        attachment = next((a for a in spec.networks if a.name == network.name), None)
        if attachment is None:
            continue
        members.append(
            ServiceOnNetwork(
                name,
                network.vips.get(name, ""),
                attachment.aliases,
                tuple(sorted(set(addresses.get((network.name, name), ())))),
                tuple(VipPort(p.vip_port, p.target, p.protocol) for p in spec.ports if p.vip_port),
            )
        )
    return OverlayNetwork(
        network.name,
        network.vni,
        network.subnet,
        network.tasks_range,
        lease,
        ipam.lease_gateway(lease),
        network.internal,
        tuple(members),
        network.encrypted,
        network.id,
        network.key_epoch,
        network.key_rotated_at,
    )


def node_overlay(
    state: ClusterState,
    node_id: str,
    local_address: str,
    entries: Iterable[TableEntry],
    members: Iterable[Member],
    vxlan_port: int,
) -> NodeOverlay:
    """This node's overlay: the networks it holds a lease in, with their services and where
    their healthy tasks are, and the other live nodes to tunnel to."""
    live = [m for m in members if not m.gone]
    addresses = task_addresses(
        entries,
        {m.node_id for m in live},
        frozenset(m.node_id for m in live if m.state == MemberState.SUSPECT),
    )
    specs = {name: service.spec for name, service in services(state).items()}
    nets = tuple(
        _network(network, node_id, specs, addresses)
        for _, network in sorted(networks(state).items())
        if node_id in network.leases
    )
    peers = tuple(sorted({m.address[0] for m in live if m.node_id != node_id}))
    return NodeOverlay(local_address, peers, nets, vxlan_port)
