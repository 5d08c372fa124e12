"""Tuning of the SWIM core. memberlist's LAN profile, made faster so a dead node is known
everywhere within a few seconds at a thousand nodes (see bench/gossip.py for the figures)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GossipConfig:
    probe_interval: float = 1.0
    # A direct ack must arrive within this; then `indirect_checks` members probe for us until
    # the end of the probe interval.
    probe_timeout: float = 0.5
    indirect_checks: int = 3
    # Broadcasts are sent retransmit_mult * ceil(log10(n + 1)) times by each node.
    retransmit_mult: int = 4
    # Suspicion lasts between min = suspicion_mult * log10(n) * probe_interval (at least one
    # interval) and max = suspicion_max_timeout_mult * min, shorter with every independent
    # confirmation, down to min after `suspicion_confirmations` of them (Lifeguard).
    suspicion_mult: float = 0.4
    suspicion_max_timeout_mult: float = 2.0
    suspicion_confirmations: int = 3
    # Besides piggy-backing on probes, pending broadcasts go to `gossip_nodes` random members
    # every `gossip_interval`, also to members dead for less than `gossip_to_the_dead_time`
    # so that a wrongly declared node hears of it and refutes.
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    gossip_to_the_dead_time: float = 30.0
    # Full-state anti-entropy with a random live member; stretched in large clusters.
    push_pull_interval: float = 30.0
    # Every reconnect_interval, push-pull with one random dead member: this is what heals a
    # partition once the dead have stopped receiving gossip.
    reconnect_interval: float = 30.0
    # How long dead and left members are remembered (and retried) before being forgotten.
    dead_retention: float = 3600.0
    # How long a deletion is remembered, so that older copies of the value do not come back.
    tombstone_retention: float = 300.0
    # Datagram budget: packets stay below udp_packet_limit including the sealing overhead.
    udp_packet_limit: int = 1400
    packet_overhead: int = 37

    def __post_init__(self) -> None:
        for name in (
            "probe_interval",
            "probe_timeout",
            "gossip_interval",
            "push_pull_interval",
            "reconnect_interval",
            "suspicion_mult",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, not {getattr(self, name)!r}")
        if self.probe_timeout >= self.probe_interval:
            raise ValueError("probe_timeout: must be shorter than probe_interval")
        if self.udp_packet_limit - self.packet_overhead < 512:
            raise ValueError("udp_packet_limit: leaves less than 512 bytes for messages")

    def retransmit_limit(self, members: int) -> int:
        return self.retransmit_mult * max(1, math.ceil(math.log10(members + 1)))

    def suspicion_bounds(self, members: int) -> tuple[float, float]:
        scale = max(1.0, math.log10(max(1, members)))
        low = self.suspicion_mult * scale * self.probe_interval
        return max(low, self.probe_interval), max(
            low, self.probe_interval
        ) * self.suspicion_max_timeout_mult

    def push_pull_period(self, members: int) -> float:
        """memberlist's pushPullScale: one more interval per doubling beyond 32 members."""
        if members <= 32:
            return self.push_pull_interval
        return self.push_pull_interval * (math.ceil(math.log2(members) - math.log2(32)) + 1)
