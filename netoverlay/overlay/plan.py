"""The VXLAN plan of one node, and the steps from what the kernel has to it: pure.

Each network is one layer-2 segment across the nodes: on every node a bridge (its tasks
plug into it) with a VXLAN device as one more port. The VXLAN device floods broadcast and
unknown frames to every other live node (an all-zero forwarding entry per peer, as
`bridge fdb append 00:00:00:00:00:00 dev VX dst PEER` makes) and learns where each task's
MAC is from the frames it receives. A node that leaves the live set loses its flooding entry,
and the addresses learned behind it, on every node at the next plan, so nothing is sent
towards it any more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from netoverlay.overlay.types import VXLAN_OVERHEAD, NodeOverlay

# Every VXLAN device a node makes is named with this prefix, so one it no longer wants (its
# network was removed while the node was down) is found and removed.
VXLAN_PREFIX = "svx"
# IPv4 needs 68; far below that the underlay is misconfigured, not small.
MIN_MTU = 576


@dataclass(frozen=True, slots=True)
class LinkPlan:
    network: str
    vni: int
    vxlan: str
    bridge: str
    local: str
    port: int
    mtu: int
    peers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LinkState:
    """What the kernel has for one VXLAN device (read by the shell)."""

    vxlan: str
    vni: int
    local: str
    port: int
    bridge: str
    mtu: int
    flood: frozenset[str]


@dataclass(frozen=True, slots=True)
class CreateLink:
    plan: LinkPlan


@dataclass(frozen=True, slots=True)
class DeleteLink:
    vxlan: str


@dataclass(frozen=True, slots=True)
class AddFlood:
    vxlan: str
    peer: str


@dataclass(frozen=True, slots=True)
class RemoveFlood:
    vxlan: str
    peer: str


Step = CreateLink | DeleteLink | AddFlood | RemoveFlood


def overlay_mtu(underlay_mtu: int) -> int:
    """The MTU inside the overlay: the underlay's minus what VXLAN adds to each frame."""
    mtu = underlay_mtu - VXLAN_OVERHEAD
    if mtu < MIN_MTU:
        raise ValueError(
            f"mtu: the underlay's MTU {underlay_mtu} leaves {mtu} for the overlay, below {MIN_MTU}"
        )
    return mtu


def plan_links(overlay: NodeOverlay, underlay_mtu: int) -> tuple[LinkPlan, ...]:
    """One VXLAN device per network, flooding to every peer but this node itself."""
    mtu = overlay_mtu(underlay_mtu)
    peers = tuple(sorted(set(overlay.peers) - {overlay.local_address}))
    return tuple(
        LinkPlan(
            n.name, n.vni, n.vxlan, n.bridge, overlay.local_address, overlay.vxlan_port, mtu, peers
        )
        for n in sorted(overlay.networks, key=lambda n: n.vni)
    )


def steps(wanted: tuple[LinkPlan, ...], have: Mapping[str, LinkState]) -> list[Step]:
    """The changes that turn `have` (our devices, by name) into `wanted`, in a safe order:
    removals first, then new devices, then flooding entries."""
    out: list[Step] = []
    by_name = {plan.vxlan: plan for plan in wanted}
    for name in sorted(have):
        plan = by_name.get(name)
        link = have[name]
        if plan is None or (link.vni, link.local, link.port, link.bridge, link.mtu) != (
            plan.vni,
            plan.local,
            plan.port,
            plan.bridge,
            plan.mtu,
        ):
            out.append(DeleteLink(name))
    kept = {name for name in have if DeleteLink(name) not in out}
    for plan in wanted:
        flood = have[plan.vxlan].flood if plan.vxlan in kept else frozenset()
        if plan.vxlan not in kept:
            out.append(CreateLink(plan))
        out += [RemoveFlood(plan.vxlan, peer) for peer in sorted(flood - set(plan.peers))]
        out += [AddFlood(plan.vxlan, peer) for peer in plan.peers if peer not in flood]
    return out
