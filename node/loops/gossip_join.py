"""Joins the gossip pool through the nodes the replicated state knows, and tries again while
this node knows no other live member (a restarted node, a node that joined before the
others)."""

from __future__ import annotations

import asyncio
import contextlib

from consensus.nodes import nodes
from consensus.raft import RaftNode
from netoverlay.gossip.service import GossipService, JoinError

# How often a node that knows no live gossip member retries joining through the known nodes.
GOSSIP_REJOIN_INTERVAL = 2.0


class GossipJoinLoop:
    def __init__(
        self,
        raft: RaftNode,
        gossip: GossipService,
        node_id: str,
        interval: float = GOSSIP_REJOIN_INTERVAL,
    ) -> None:
        self._raft = raft
        self._gossip = gossip
        self._node_id = node_id
        self._interval = interval
        self._wake = raft.subscribe()

    async def run(self) -> None:
        while True:
            lonely = all(m.node_id == self._node_id or m.gone for m in self._gossip.members())
            if lonely:
                with self._raft.view() as state:
                    seeds = [
                        (n.address, n.gossip_port)
                        for n in nodes(state).values()
                        if n.id != self._node_id
                    ]
                if seeds:
                    with contextlib.suppress(JoinError):
                        await self._gossip.join(seeds)
            # Woken by state changes; the timeout is the retry interval while alone.
            # (asyncio.timeout: Python 3.11's wait_for may swallow the cancellation that
            # stops this loop when it arrives with a change.)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
