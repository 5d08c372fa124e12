"""Which nodes vote in Raft: a pure planner and the leader's loop that carries its plan out.

The voter set is kept at the largest odd number <= 5 that the cluster allows; other nodes are
non-voting members. A voter that stays down past the grace period is replaced (autopilot).
One membership change at a time, and never one that would lose quorum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Literal, Optional

from consensus.model import Node, target_voter_count
from consensus.nodes import SetNodeRole, nodes
from consensus.raft import ProposeError
from node.client import ApiError, Unreachable
from node.control import ControlPlane

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VoterChange:
    action: Literal["promote", "demote"]
    node: Node
    reason: str


def _majority(n: int) -> int:
    return n // 2 + 1


def _alive(node: Node) -> bool:
    return node.status == "ready"


def safe_to_apply(change: VoterChange, voters: list[Node]) -> bool:
    """Would the voter set still have a live majority after `change`?"""
    alive = sum(1 for v in voters if _alive(v))
    if change.action == "promote":
        return alive + (1 if _alive(change.node) else 0) >= _majority(len(voters) + 1)
    return alive - (1 if _alive(change.node) else 0) >= _majority(len(voters) - 1)


def plan_voter_change(all_nodes: list[Node], leader_id: str, now: float,
                      grace: float) -> Optional[VoterChange]:
    """The next single change that moves the voter set toward its target, or None."""
    voters = sorted((n for n in all_nodes if n.role == "voter"), key=lambda n: n.id)
    members = sorted((n for n in all_nodes if n.role != "voter" and _alive(n)),
                     key=lambda n: (n.joined_at, n.id))
    expired = [v for v in voters if not _alive(v) and now - v.status_changed_at >= grace]
    changes: list[VoterChange] = [
        VoterChange("demote", v, f"down for more than {grace:g} s") for v in expired]
    # Voters that are down but still within their grace keep their seat.
    eligible = sum(1 for n in all_nodes if _alive(n)) + sum(
        1 for v in voters if not _alive(v) and v not in expired)
    target = target_voter_count(eligible)
    seated = len(voters) - len(expired)
    if not expired:
        if seated < target and members:
            changes.append(VoterChange("promote", members[0],
                                       f"voter set below its target of {target}"))
        elif seated > target:
            candidates = sorted((v for v in voters if v.id != leader_id),
                                key=lambda v: (_alive(v), -v.joined_at, v.id))
            if candidates:
                changes.append(VoterChange("demote", candidates[0],
                                           f"voter set above its target of {target}"))
    for change in changes:
        if safe_to_apply(change, voters):
            return change
    return None


class VoterManager:
    """Runs on the leader: carries out voter changes, automatic and manual, one at a time."""

    def __init__(self, control: ControlPlane, node_id: str, grace: float) -> None:
        self._control = control
        self._raft = control.raft
        self._node_id = node_id
        self._grace = grace
        self._lock = asyncio.Lock()

    def _snapshot(self) -> list[Node]:
        with self._raft.read() as state:
            return list(nodes(state).values())

    async def run(self) -> None:
        """Level-triggered: re-plan on every state change while this node leads."""
        seen = -1
        while True:
            seen = await self._raft.wait_changed(seen, timeout=self._grace / 4 if self._grace else 1)
            if not self._raft.is_leader():
                continue
            async with self._lock:  # plan on the state as it is once no other change runs
                change = plan_voter_change(self._snapshot(), self._node_id, time.time(),
                                           self._grace)
                if change is None:
                    continue
                try:
                    await self._carry_out(change)
                except (ProposeError, ApiError, Unreachable, asyncio.TimeoutError) as exc:
                    log.warning("voter change %s %s failed: %s", change.action,
                                change.node.name, exc)
                    failed = True
                else:
                    failed = False
            if failed:
                await asyncio.sleep(1.0)

    async def apply(self, *changes: VoterChange) -> None:
        """Carry out `changes` in order, with no other change in between (a manual swap
        must not let the automatic loop undo its first half)."""
        async with self._lock:
            for change in changes:
                await self._carry_out(change)

    async def _carry_out(self, change: VoterChange) -> None:
        log.info("%s %s: %s", change.action, change.node.name, change.reason)
        if change.action == "promote":
            await self._promote(change.node)
        else:
            await self._demote(change.node)

    async def _promote(self, node: Node) -> None:
        voters = [v.raft_address for v in self._snapshot() if v.role == "voter"]
        client = self._control.client_for(node)
        # A node commits its registration before its API is up: only promote one that
        # answers, or Raft would wait for a voter that never starts.
        await client.get("/healthz")
        adding = None
        if node.raft_address not in self._raft.status().partners:
            # Raft wants the new voter added before it starts as one; the add cannot commit
            # until the new voter answers, so tell it to restart while the add is pending.
            adding = asyncio.ensure_future(self._raft.add_voter(node.raft_address, timeout=15.0))
        try:
            await self._tell_role(node, "voter", voters + [node.raft_address])
        except BaseException:
            if adding is not None:
                # The add is in the log already: let it finish, then take it back.
                with contextlib.suppress(ProposeError, asyncio.TimeoutError):
                    await adding
                with contextlib.suppress(ProposeError, asyncio.TimeoutError):
                    await self._raft.remove_voter(node.raft_address, timeout=10.0)
            raise
        if adding is not None:
            await adding
        await self._commit_role(node, "voter")

    async def _demote(self, node: Node) -> None:
        if node.raft_address in self._raft.status().partners:
            await self._raft.remove_voter(node.raft_address, timeout=10.0)
        await self._commit_role(node, "member")
        voters = [v.raft_address for v in self._snapshot() if v.role == "voter"]
        if node.status == "ready":
            try:
                await self._tell_role(node, "member", voters)
            except (ApiError, Unreachable) as exc:
                log.warning("demoted %s but could not tell it: %s", node.name, exc)

    async def _commit_role(self, node: Node, role: str) -> None:
        result = await self._control.submit(SetNodeRole(node.id, role))
        if not result.ok:
            raise ProposeError(result.error, retryable=False)

    async def _tell_role(self, node: Node, role: str, voters: list[str]) -> None:
        await self._control.client_for(node).post(
            "/v1/internal/raft-role", {"role": role, "voters": sorted(set(voters))})

    # -- manual control ---------------------------------------------------------------
    async def remove_seat(self, node: Node) -> None:
        """Take a node's vote away before the node is removed from the cluster."""
        voters = [n for n in self._snapshot() if n.role == "voter"]
        if not safe_to_apply(VoterChange("demote", node, "removed"), voters):
            raise ValueError(f"removing voter {node.name} now would lose quorum")
        async with self._lock:
            if node.raft_address in self._raft.status().partners:
                await self._raft.remove_voter(node.raft_address, timeout=10.0)
            await self._commit_role(node, "member")

    async def promote(self, node: Node) -> None:
        if node.role == "voter":
            return
        all_nodes = self._snapshot()
        voters = [n for n in all_nodes if n.role == "voter"]
        if node.status != "ready":
            raise ValueError(f"node {node.name} is down and cannot become a voter")
        changes = [VoterChange("promote", node, "promoted by the operator")]
        # Keep the set odd: a manual promotion at the target replaces another voter.
        if len(voters) + 1 > target_voter_count(sum(1 for n in all_nodes if _alive(n))):
            others = sorted((v for v in voters if v.id != self._node_id),
                            key=lambda v: (_alive(v), -v.joined_at, v.id))
            if others:
                changes.append(VoterChange("demote", others[0], f"replaced by {node.name}"))
        await self.apply(*changes)

    async def demote(self, node: Node) -> None:
        if node.role != "voter":
            return
        if node.id == self._node_id:
            raise ValueError(f"node {node.name} is the leader; demote it from another leader "
                             f"after stopping it, or remove it")
        all_nodes = self._snapshot()
        members = sorted((n for n in all_nodes if n.role != "voter" and _alive(n)),
                         key=lambda n: (n.joined_at, n.id))
        if not members:
            raise ValueError(f"no member can take {node.name}'s seat; the voter set must stay "
                             f"at {sum(1 for n in all_nodes if n.role == 'voter')}")
        await self.apply(VoterChange("promote", members[0], f"replaces {node.name}"),
                         VoterChange("demote", node, "demoted by the operator"))
