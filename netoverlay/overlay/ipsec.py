"""Encrypted overlay networks: the IPsec plan of one node, and the steps from what the
kernel has to it: pure.

As Docker Swarm does for `--opt encrypted`, the VXLAN packets of an encrypted network travel
in ESP (transport mode, AES-GCM) between the two nodes' tunnel ends:

- A node sends every network's VXLAN from one UDP port, so XFRM cannot tell networks apart
  by their selectors. The overlay's nftables ruleset marks the VXLAN packets whose VNI is an
  encrypted network's (`mark(vni)`), and one outbound policy per peer and encrypted network
  matches that mark and demands ESP. The other networks' VXLAN stays plain (no cost).
- The policy demands ESP whether or not its security association could be installed: a
  kernel without ESP, or a key missing for a moment, drops the packets, never sends them in
  clear. The ruleset also drops plain VXLAN arriving for an encrypted VNI (no ESP on it).
- Each direction of each pair of nodes has its own key and SPI, derived from the cluster
  secret, the network, its key epoch and the two tunnel addresses: both ends work out the
  same association without talking. A re-created network (new id) gets new keys.
- `shoal network rotate-key` bumps a network's epoch. For `OVERLAP` seconds after the
  rotation every node already accepts the new epoch but still sends with the old one; then
  it sends with the new one (added before the old is removed: the kernel sends with the
  newest) and accepts both for another `OVERLAP`, then the old one goes. Nodes whose clocks
  or views differ by less than `OVERLAP` never drop a packet over a rotation.

Limits, knowingly: the SPI is 24 bits of hash and the epoch's low byte, so two peers'
associations towards one node collide with a chance of about n²/2²⁵ for n associations
(the kernel then refuses the second, and the sync reports it). There is no anti-replay
window: a node that adds an association again (a peer that left and came back) restarts
its sequence numbers, which a window on the other end would refuse until that end re-added
its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from netoverlay.overlay.types import NodeOverlay, OverlayNetwork

ALGORITHM = "rfc4106(gcm(aes))"
# AES-256 and the 4-byte salt rfc4106 puts in front of each packet's IV; a 16-byte tag.
KEY_BYTES = 36
ICV_BITS = 128
# Marks, request ids and the policy priority that say "Shoal's": a VNI fits in 24 bits.
_TAG = 0x53 << 24
POLICY_PRIORITY = 0x5348
OVERLAP = 10.0
_SALT = b"shoal overlay ipsec v1"


def mark(vni: int) -> int:
    """The firewall mark of an encrypted network's VXLAN packets, and its SAs' request id."""
    return _TAG | vni


def vni_of(tag: int) -> int | None:
    """The VNI a mark or request id of ours carries; None when it is not ours."""
    return tag & 0xFFFFFF if tag >> 24 == _TAG >> 24 else None


@dataclass(frozen=True, slots=True)
class SecurityAssociation:
    """One direction between two tunnel ends for one network and key epoch."""

    src: str
    dst: str
    spi: int
    reqid: int
    key: bytes

    @property
    def id(self) -> tuple[str, str, int]:
        return (self.src, self.dst, self.spi)

    def __repr__(self) -> str:  # never print a key
        return f"SA({self.src}->{self.dst} spi={self.spi:#010x} reqid={self.reqid:#x})"


@dataclass(frozen=True, slots=True)
class Policy:
    """Outbound VXLAN from `src` to `dst` carrying `mark` must go in ESP."""

    src: str
    dst: str
    port: int
    mark: int


@dataclass(frozen=True, slots=True)
class IpsecPlan:
    states: frozenset[SecurityAssociation]
    policies: frozenset[Policy]
    # When the plan changes by itself (a rotation's next phase); None: only on new input.
    next_change: float | None = None


@lru_cache(maxsize=4096)  # every sync asks again for the same pairs: derive each once
def pair_key(
    base_key: bytes, network_id: str, vni: int, epoch: int, src: str, dst: str
) -> tuple[int, bytes]:
    """The SPI and key of one direction of one pair, for one network and key epoch. The SPI
    holds the epoch's low byte, so two epochs of a pair never share an SPI; the kernel
    reserves SPIs below 256."""
    info = f"shoal/overlay-ipsec/{network_id}/{vni}/{epoch}/{src}>{dst}".encode()
    material = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES + 3, salt=_SALT, info=info).derive(
        base_key
    )
    spi = (max(1, int.from_bytes(material[:3], "big")) << 8) | (epoch & 0xFF)
    return spi, material[3:]


def _association(
    base_key: bytes, network: OverlayNetwork, epoch: int, src: str, dst: str
) -> SecurityAssociation:
    spi, key = pair_key(base_key, network.network_id, network.vni, epoch, src, dst)
    return SecurityAssociation(src, dst, spi, mark(network.vni), key)


def epochs(network: OverlayNetwork, now: float) -> tuple[int, tuple[int, ...], float | None]:
    """(the epoch to send with, the epochs to accept, when that changes next)."""
    epoch = network.key_epoch
    if epoch == 0:
        return 0, (0,), None
    switch, retire = network.key_rotated_at + OVERLAP, network.key_rotated_at + 2 * OVERLAP
    if now < switch:
        return epoch - 1, (epoch - 1, epoch), switch
    if now < retire:
        return epoch, (epoch - 1, epoch), retire
    return epoch, (epoch,), None


def plan_ipsec(overlay: NodeOverlay, base_key: bytes, now: float) -> IpsecPlan:
    """Every association and policy this node wants, for its encrypted networks and its
    live peers."""
    local = overlay.local_address
    peers = sorted(set(overlay.peers) - {local})
    states, policies, changes = set(), set(), []
    for network in overlay.networks:
        if not network.encrypted:
            continue
        send, accept, change = epochs(network, now)
        if change is not None:
            changes.append(change)
        for peer in peers:
            policies.add(Policy(local, peer, overlay.vxlan_port, mark(network.vni)))
            states.add(_association(base_key, network, send, local, peer))
            states.update(_association(base_key, network, epoch, peer, local) for epoch in accept)
    return IpsecPlan(frozenset(states), frozenset(policies), min(changes, default=None))


@dataclass(frozen=True, slots=True)
class AddState:
    state: SecurityAssociation


@dataclass(frozen=True, slots=True)
class DeleteState:
    src: str
    dst: str
    spi: int


@dataclass(frozen=True, slots=True)
class AddPolicy:
    policy: Policy


@dataclass(frozen=True, slots=True)
class DeletePolicy:
    policy: Policy


IpsecStep = AddState | DeleteState | AddPolicy | DeletePolicy


def ipsec_steps(
    wanted: IpsecPlan, states: Iterable[tuple[str, str, int]], policies: Iterable[Policy]
) -> list[IpsecStep]:
    """The changes that turn what the kernel has (our SAs by (src, dst, spi), our policies)
    into `wanted`, in four runs: new policies (a policy with no SA yet drops its packets:
    nothing leaves in clear), new SAs (a new epoch's is sending before the old one goes),
    then the policies and the SAs no longer wanted."""
    have_states, have_policies = set(states), set(policies)
    wanted_ids = {s.id for s in wanted.states}
    out: list[IpsecStep] = [
        AddPolicy(p) for p in sorted(wanted.policies - have_policies, key=_policy_order)
    ]
    out += [
        AddState(s) for s in sorted(wanted.states, key=lambda s: s.id) if s.id not in have_states
    ]
    out += [DeletePolicy(p) for p in sorted(have_policies - wanted.policies, key=_policy_order)]
    out += [DeleteState(*sid) for sid in sorted(have_states - wanted_ids)]
    return out


def _policy_order(policy: Policy) -> tuple[str, int, str, int]:
    return (policy.dst, policy.mark, policy.src, policy.port)


def ipsec_rules(overlay: NodeOverlay) -> list[str]:
    """The nftables chains (inside the overlay's ip table) that mark an encrypted network's
    outgoing VXLAN for its policies, and drop plain VXLAN arriving for it. A `route` chain:
    a mark set there sends the packet through the routing (and XFRM) lookup again. The VNI
    is the 24 bits after the VXLAN header's first 4 bytes (bit 96 from the UDP header)."""
    vnis = sorted(n.vni for n in overlay.networks if n.encrypted)
    if not vnis:
        return []
    port = overlay.vxlan_port
    return [
        "\tchain ipsec_mark {",
        "\t\ttype route hook output priority mangle; policy accept;",
        *(f"\t\tudp dport {port} @th,96,24 {vni} meta mark set {mark(vni):#x}" for vni in vnis),
        "\t}",
        "\tchain ipsec_guard {",
        "\t\ttype filter hook input priority filter; policy accept;",
        f"\t\tudp dport {port} @th,96,24 {{ {', '.join(map(str, vnis))} }} meta secpath missing drop",
        "\t}",
    ]
