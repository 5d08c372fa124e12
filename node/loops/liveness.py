"""Node liveness: gossip's verdicts become committed NodeDown / NodeUp on the leader.

Gossip (netoverlay) decides quickly and locally who is alive; the replicated state decides
for the whole cluster. The leader turns a `dead`/`left` verdict into a committed
`SetNodeStatus(down)` and a return to `alive` into `SetNodeStatus(ready)`, so the scheduler
and autopilot act on one agreed view. A node joins gossip only once it holds the cluster's
state, so a newly registered node (`joining`) turns `ready` when gossip first sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from consensus.model import Node
from consensus.nodes import SetNodeStatus, nodes
from consensus.raft import ProposeError
from netoverlay.gossip.model import Member, MemberState
from netoverlay.gossip.service import GossipService
from node.control import ControlPlane

log = logging.getLogger(__name__)


# A node `joining` this long that gossip never heard of is down: a machine that did not come
# back after a restore (node.backup), or a join that never finished. Its tasks are placed
# elsewhere; it turns ready once it is back. A join catches up within seconds, even of a
# large state.
UNSEEN_GRACE = 300.0
# How often the leader looks again when nothing else wakes it (for UNSEEN_GRACE).
RECHECK = 30.0


def status_changes(
    all_nodes: Iterable[Node],
    members: dict[str, Member],
    leader_id: str,
    now: float,
    unseen_grace: float = UNSEEN_GRACE,
) -> list[SetNodeStatus]:
    """The status commits that bring the replicated view in line with gossip's."""
    changes = []
    for node in all_nodes:
        member = members.get(node.id)
        if node.id == leader_id:
            alive = True  # the leader deciding this is evidently alive
        elif member is None:
            if node.status == "joining" and now - node.status_changed_at > unseen_grace:
                changes.append(SetNodeStatus(node.id, "down", now))
            continue  # no verdict yet
        elif member.state == MemberState.SUSPECT:
            continue  # suspicion is not death
        else:
            alive = member.state == MemberState.ALIVE
        if alive and node.status in ("down", "joining"):
            changes.append(SetNodeStatus(node.id, "ready", now))
        elif not alive and node.status == "ready":
            changes.append(SetNodeStatus(node.id, "down", now))
    return changes


class LivenessLoop:
    """Runs everywhere, acts only on the leader; wakes on gossip events and state changes."""

    def __init__(self, control: ControlPlane, gossip: GossipService, node_id: str) -> None:
        self._control = control
        self._raft = control.raft
        self._gossip = gossip
        self._node_id = node_id
        self._wake = self._raft.subscribe()
        gossip.on_change(lambda _event: self._wake.set())

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECHECK):
                    await self._wake.wait()
            self._wake.clear()
            if not self._raft.is_leader():
                continue
            members = {m.node_id: m for m in self._gossip.members()}
            with self._raft.view() as state:
                known = list(nodes(state).values())
            for change in status_changes(known, members, self._node_id, time.time()):
                try:
                    await self._control.submit(change)
                    log.info("node %s is %s", change.node_id, change.status)
                except ProposeError as exc:
                    log.warning(
                        "could not commit node %s %s: %s", change.node_id, change.status, exc
                    )
                    await asyncio.sleep(0.5)
                    self._wake.set()
                    break
