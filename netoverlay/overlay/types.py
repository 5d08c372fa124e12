"""What a node's overlay is built from: typed values the node fills from the replicated
state and the gossiped endpoint table. Nothing here reads the state itself."""

from __future__ import annotations

from dataclasses import dataclass, field

# VXLAN over IPv4 adds 50 bytes: outer IPv4 (20), UDP (8), VXLAN (8), inner Ethernet (14).
VXLAN_OVERHEAD = 50
# ESP in transport mode with AES-GCM adds at most 40: SPI and sequence (8), IV (8), padding
# to 4 bytes and its trailer (up to 5), tag (16), rounded up.
ESP_OVERHEAD = 40
DEFAULT_VXLAN_PORT = 4789
# The device (a bridge without ports) every network's VIP range is routed to on each node.
VIP_DEVICE = "shoal-vips"


@dataclass(frozen=True, slots=True)
class VipPort:
    """A VIP answering on another port than its tasks': `port` on the VIP is `target` on
    the task (a Kubernetes Service's port → targetPort)."""

    port: int
    target: int
    protocol: str = "tcp"


@dataclass(frozen=True, slots=True)
class ServiceOnNetwork:
    """A service as one network sees it: its VIP (empty when it has none), the extra names
    it answers to there, the addresses of its healthy tasks on this network, and the VIP's
    ports that lead to another port of the tasks (every other port is kept)."""

    name: str
    vip: str = ""
    aliases: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    ports: tuple[VipPort, ...] = ()


@dataclass(frozen=True, slots=True)
class OverlayNetwork:
    """One network as this node takes part in it. `lease` is empty when the network had no
    block left for this node: it carries traffic but runs no task of the network."""

    name: str
    vni: int
    subnet: str
    tasks_range: str
    lease: str = ""
    gateway: str = ""
    internal: bool = False
    services: tuple[ServiceOnNetwork, ...] = ()
    # Encrypted networks' VXLAN travels in IPsec ESP between nodes (see overlay.ipsec).
    encrypted: bool = False
    network_id: str = ""
    key_epoch: int = 0
    key_rotated_at: float = 0.0

    def mtu(self, overlay_mtu: int) -> int:
        """The MTU inside this network: an encrypted one leaves room for ESP."""
        return overlay_mtu - ESP_OVERHEAD if self.encrypted else overlay_mtu

    @property
    def bridge(self) -> str:
        # Interface names hold 15 characters: the VNI (at most 8 digits) names both devices.
        return f"sov{self.vni}"

    @property
    def vxlan(self) -> str:
        return f"svx{self.vni}"


@dataclass(frozen=True, slots=True)
class NodeOverlay:
    """Everything one node's overlay shells need, in one value."""

    local_address: str  # this node's underlay address: its VXLAN tunnel end
    peers: tuple[str, ...]  # the underlay addresses of the other live nodes
    networks: tuple[OverlayNetwork, ...] = field(default_factory=tuple)
    vxlan_port: int = DEFAULT_VXLAN_PORT
