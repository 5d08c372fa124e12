"""Persists the voters' Raft and API addresses and this node's Raft role, so a restarted node knows where
its cluster is."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from consensus.nodes import voters
from consensus.raft import RaftNode
from node.config import Identity


class VoterMemoryLoop:
    def __init__(
        self, raft: RaftNode, identity: Callable[[], Identity], save: Callable[[Identity], None]
    ) -> None:
        self._raft = raft
        self._identity = identity
        self._save = save

    async def run(self) -> None:
        seen = -1
        while True:
            seen = await self._raft.wait_changed(seen)
            with self._raft.view() as state:
                seated = voters(state)
            addresses = tuple(v.raft_address for v in seated)
            apis = tuple(v.api_address for v in seated)
            identity = self._identity()
            if addresses and (
                addresses != identity.voters
                or apis != identity.voter_apis
                or self._raft.role != identity.role
            ):
                self._save(
                    dataclasses.replace(
                        identity, voters=addresses, voter_apis=apis, role=self._raft.role
                    )
                )
