"""The protocol level each node announces, and the cluster's: the lowest over every node the
cluster holds (consensus.protocol).

A node announces its level and release in its gossip meta, which every release carries as
it comes: a field in the replicated node record would be refused by the nodes of the release
before (they decode commands and snapshots strictly), which are exactly the ones a rolling
upgrade runs beside. A node that announced nothing, or that this node has not heard from
since it started, counts at the lowest level, so the cluster's level can only be too low,
never too high: a node that is down counts at the level it last announced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from consensus import protocol
from consensus.nodes import nodes
from consensus.store import StateVersion
from netoverlay.gossip.model import MemberEvent
from netoverlay.gossip.service import GossipService

log = logging.getLogger(__name__)

# The gossip meta keys of a node's level and release.
PROTOCOL_META = "protocol"
VERSION_META = "version"


@dataclass(frozen=True, slots=True)
class Announced:
    level: int
    version: str


def announcement(version: str) -> dict[str, object]:
    """What this node puts in its gossip meta."""
    return {PROTOCOL_META: protocol.PROTOCOL, VERSION_META: version}


class ProtocolLevels:
    def __init__(
        self,
        read_state: Callable[[], StateVersion],
        gossip: GossipService,
        changed: asyncio.Event,
    ) -> None:
        """`changed` is set when the state changes (nodes come and go)."""
        self._read_state = read_state
        self._gossip = gossip
        self._wake = changed
        # The lowest until this node has heard the others.
        self.minimum = protocol.LOWEST
        # Nodes of the cluster this node has not heard announce anything, counted lowest
        # (None before it looked): the minimum is exact only when none are.
        self.unheard: int | None = None
        self.announced: dict[str, Announced] = {}

    async def run(self) -> None:
        stop_listening = self._gossip.on_change(
            lambda event: self._wake.set() if isinstance(event, MemberEvent) else None
        )
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self.refresh()
        finally:
            stop_listening()

    def refresh(self) -> None:
        self.announced = {
            m.node_id: Announced(
                protocol.announced(m.meta.get(PROTOCOL_META)), str(m.meta.get(VERSION_META, ""))
            )
            for m in self._gossip.members()
        }
        with self._read_state() as state:
            node_ids = list(nodes(state))
        levels = {node_id: a.level for node_id, a in self.announced.items()}
        self.unheard = sum(1 for node_id in node_ids if node_id not in levels)
        level = protocol.minimum(node_ids, levels)
        if level != self.minimum:
            log.info(
                "cluster protocol level %d -> %d (proposal batching %s)",
                self.minimum,
                level,
                "on" if level >= protocol.BATCH else "off",
            )
            self.minimum = level

    @property
    def exact(self) -> bool:
        return self.unheard == 0

    def of(self, node_id: str) -> Announced:
        return self.announced.get(node_id, Announced(protocol.LOWEST, ""))
