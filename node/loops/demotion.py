"""A voter that was demoted while it was down restarts as a voter of the old set: the leader
does not count it, so it hears no leader and would never catch up. While it hears none, this
loop asks the other nodes it knows for the leader's voter set, and has the node restart as a
member when it is no longer in it. It runs only while the node catches up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from consensus.nodes import nodes
from node.client import ApiError, Unreachable
from node.control import ControlPlane

log = logging.getLogger(__name__)

# How often a voter that hears no leader while catching up asks whether it was demoted.
DEMOTION_CHECK_INTERVAL = 3.0
# How long one other node may take to answer.
ASK_TIMEOUT = 2.0


class DemotionLoop:
    def __init__(
        self,
        control: ControlPlane,
        node_id: str,
        raft_address: str,
        become_member: Callable[[list[str]], Awaitable[None]],
        remembered_voters: Sequence[str] = (),
        own_api: str = "",
        interval: float = DEMOTION_CHECK_INTERVAL,
    ) -> None:
        self._control = control
        self._raft = control.raft
        self._node_id = node_id
        self._raft_address = raft_address
        self._remembered = tuple(remembered_voters)
        self._own_api = own_api
        self._become_member = become_member
        self._interval = interval

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if self._raft.role != "voter" or self._raft.leader() is not None:
                continue
            voters = await self._leaders_voter_set()
            if voters and self._raft_address not in voters:
                log.info(
                    "this node is no longer a voter (voters %s): rejoining as a member",
                    sorted(voters),
                )
                await self._become_member(sorted(voters))

    async def _leaders_voter_set(self) -> set[str] | None:
        """The leader's voter set (Raft addresses), asked of every other node this node knows:
        those in its replica and the voters it last saw (API addresses). The replica of a
        restarted node applies nothing before it hears a leader, so it may know no one else."""
        with self._raft.view() as state:
            known = {n.api_address for n in nodes(state).values() if n.id != self._node_id}
        known.update(self._remembered)
        known.discard(self._own_api)
        for address in sorted(known):
            try:
                answer = await asyncio.wait_for(
                    self._control.client_at(address).get("/v1/cluster"), ASK_TIMEOUT
                )
            except (TimeoutError, ApiError, Unreachable):
                continue
            this = answer.get("this_node", {})
            if this.get("is_leader"):
                return {this["raft_address"], *this["raft_partners"]}
        return None
