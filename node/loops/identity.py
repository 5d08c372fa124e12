"""Persists the voter addresses and this node's Raft role, so a restarted node knows where
its cluster is."""

from __future__ import annotations

import dataclasses
from typing import Callable

from consensus.nodes import voters
from consensus.raft import RaftNode
from node.config import Identity


class VoterMemoryLoop:
    def __init__(self, raft: RaftNode, identity: Callable[[], Identity],
                 save: Callable[[Identity], None]) -> None:
        self._raft = raft
        self._identity = identity
        self._save = save

    async def run(self) -> None:
        seen = -1
        while True:
            seen = await self._raft.wait_changed(seen)
            with self._raft.read() as state:
                addresses = tuple(v.raft_address for v in voters(state))
            identity = self._identity()
            if addresses and (addresses != identity.voters or self._raft.role != identity.role):
                self._save(dataclasses.replace(identity, voters=addresses, role=self._raft.role))
