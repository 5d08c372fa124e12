"""SWIM gossip: membership, failure detection and a disseminated key/value table.

`GossipCore` is the protocol without I/O; `SimNetwork` runs many cores in simulated time;
`GossipService` is the asyncio shell (UDP + TCP, sealed packets) a node owns.
"""

from netoverlay.gossip.config import GossipConfig
from netoverlay.gossip.core import GossipCore
from netoverlay.gossip.model import (
    Address,
    Event,
    Member,
    MemberEvent,
    MemberInfo,
    MemberState,
    TableEntry,
    TableEvent,
)
from netoverlay.gossip.service import GossipService, GossipServiceConfig, GossipStats, JoinError

__all__ = [
    "Address",
    "Event",
    "GossipConfig",
    "GossipCore",
    "GossipService",
    "GossipServiceConfig",
    "GossipStats",
    "JoinError",
    "Member",
    "MemberEvent",
    "MemberInfo",
    "MemberState",
    "TableEntry",
    "TableEvent",
]
