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
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from consensus import protocol
from consensus.model import Node
from consensus.nodes import NODES
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
        self._nodes: Mapping[str, Node] | None = None
        self._members_changed = True

    async def run(self) -> None:
        stop_listening = self._gossip.on_change(self._on_gossip)
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                with self._read_state() as state:
                    table = state.table(NODES)
                # A version shares the tables its commands left alone: most wake-ups (task
                # reports, writes) change no node, and gossip says when a member changed.
                if table is not self._nodes or self._members_changed:
                    self._nodes, self._members_changed = table, False
                    self.refresh(list(table))
        finally:
            stop_listening()

    def _on_gossip(self, event: object) -> None:
        if isinstance(event, MemberEvent):
            self._members_changed = True
            self._wake.set()

    def refresh(self, node_ids: list[str]) -> None:
        """The levels announced now, and the cluster's over `node_ids` (all its nodes)."""
        self.announced = {
            m.node_id: Announced(
                protocol.announced(m.meta.get(PROTOCOL_META)), str(m.meta.get(VERSION_META, ""))
            )
            for m in self._gossip.members()
        }
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
