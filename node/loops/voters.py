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
from typing import Literal

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


def voter_floor(existing_nodes: int) -> int:
    """The fewest voters autopilot keeps: 3 while 3 nodes exist, down ones included. A voter
    that is down (or only slow: an event loop that stalled while its Raft thread ran) keeps
    its seat rather than taking the cluster to 2 voters, then 1, and its fault tolerance
    to nothing; the node returns to a seat that is still its own."""
    return 3 if existing_nodes >= 3 else target_voter_count(existing_nodes)


def plan_voter_change(
    all_nodes: list[Node],
    leader_id: str,
    now: float,
    grace: float,
    skip: frozenset[str] = frozenset(),
) -> VoterChange | None:
    """The next single change that moves the voter set toward its target, or None. Members
    in `skip` (a promotion of them failed lately: not caught up, not connected) are passed
    over for the next one.

    A voter down past `grace` is replaced by promoting a member first and demoting it after,
    so the set never dips below its size; without a member to take its seat it is demoted
    only while the set stays at or above the floor (`voter_floor`)."""
    voters = sorted((n for n in all_nodes if n.role == "voter"), key=lambda n: n.id)
    members = sorted(
        (n for n in all_nodes if n.role != "voter" and _alive(n) and n.id not in skip),
        key=lambda n: (n.joined_at, n.id),
    )
    expired = [v for v in voters if not _alive(v) and now - v.status_changed_at >= grace]
    # Voters that are down but still within their grace keep their seat.
    eligible = sum(1 for n in all_nodes if _alive(n)) + sum(
        1 for v in voters if not _alive(v) and v not in expired
    )
    grow_to = target_voter_count(eligible)
    # Grown only to an odd size the live nodes fill; kept at no less than the floor.
    target = max(voter_floor(len(all_nodes)), grow_to)
    seated = len(voters) - len(expired)
    changes: list[VoterChange] = []
    if seated < (target if expired else grow_to) and members:
        reason = (
            f"replaces {expired[0].name}, down for more than {grace:g} s"
            if expired
            else f"voter set below its target of {grow_to}"
        )
        changes.append(VoterChange("promote", members[0], reason))
    if len(voters) > target:
        changes += [VoterChange("demote", v, f"down for more than {grace:g} s") for v in expired]
        candidates = sorted(
            (v for v in voters if v.id != leader_id and v not in expired),
            key=lambda v: (_alive(v), -v.joined_at, v.id),
        )
        changes += [
            VoterChange("demote", v, f"voter set above its target of {target}")
            for v in candidates[:1]
            if not expired
        ]
    for change in changes:
        if safe_to_apply(change, voters):
            return change
    return None


class NotCaughtUp(Exception):
    """A member that does not hold the cluster's state, or does not hear this leader, must
    not vote: it would stall commits (a quorum that cannot append) and call elections."""


# A member whose promotion failed is passed over by autopilot for this long.
PROMOTION_BACKOFF = 30.0
# How long a promotion waits for the member to hold the state and hear the leader.
CATCH_UP_PATIENCE = 5.0


class VoterManager:
    """Runs on the leader: carries out voter changes, automatic and manual, one at a time,
    and keeps Raft's voter set and the replicated roles the same."""

    def __init__(self, control: ControlPlane, node_id: str, grace: float) -> None:
        self._control = control
        self._raft = control.raft
        self._node_id = node_id
        self._grace = grace
        self._lock = asyncio.Lock()
        self._failed_promotions: dict[str, float] = {}  # node id -> when (monotonic)
        # Members told their role since they last came up: node id -> status_changed_at.
        self._told_member: dict[str, float] = {}

    def _snapshot(self) -> list[Node]:
        with self._raft.view() as state:
            return list(nodes(state).values())

    def _skip(self) -> frozenset[str]:
        now = time.monotonic()
        self._failed_promotions = {
            k: t for k, t in self._failed_promotions.items() if now - t < PROMOTION_BACKOFF
        }
        return frozenset(self._failed_promotions)

    async def run(self) -> None:
        """Level-triggered: re-plan on every state change while this node leads."""
        seen = -1
        while True:
            seen = await self._raft.wait_changed(
                seen, timeout=self._grace / 4 if self._grace else 1
            )
            if not self._raft.is_leader():
                continue
            async with self._lock:  # plan on the state as it is once no other change runs
                try:
                    await self._heal()
                    change = plan_voter_change(
                        self._snapshot(), self._node_id, time.time(), self._grace, self._skip()
                    )
                    if change is None:
                        continue
                    await self._carry_out(change)
                except (TimeoutError, ProposeError, ApiError, Unreachable, NotCaughtUp) as exc:
                    log.warning("voter change failed: %s", exc)
                    failed = True
                else:
                    failed = False
            if failed:
                await asyncio.sleep(1.0)

    async def apply(self, *changes: VoterChange) -> None:
        """Carry out `changes` in order, with no other change in between (a manual swap
        must not let the automatic loop undo its first half). All or nothing: when one
        fails, those already made are undone, so the voter set is left as it was."""
        async with self._lock:
            done: list[VoterChange] = []
            try:
                for change in changes:
                    await self._carry_out(change)
                    done.append(change)
            except BaseException:
                for change in reversed(done):
                    undo = VoterChange(
                        "demote" if change.action == "promote" else "promote",
                        change.node,
                        f"undoing: {change.reason}",
                    )
                    try:
                        await self._carry_out(undo)
                    except (TimeoutError, ProposeError, ApiError, Unreachable, NotCaughtUp) as exc:
                        log.error(
                            "could not undo %s of %s: %s", change.action, change.node.name, exc
                        )
                raise

    async def _carry_out(self, change: VoterChange) -> None:
        log.info("%s %s: %s", change.action, change.node.name, change.reason)
        if change.action == "promote":
            try:
                await self._promote(change.node)
            except BaseException:
                self._failed_promotions[change.node.id] = time.monotonic()
                raise
        else:
            await self._demote(change.node)

    async def _heal(self) -> None:
        """Bring Raft's voter set back in line with the replicated roles after a change that
        failed half-way (an add that committed after its caller gave up, a crash between the
        two writes): a Raft voter the state calls a member is removed; a node the state calls
        a voter that Raft lacks is recorded as a member (autopilot then promotes properly)."""
        status = self._raft.status()
        in_raft = set(status.partners)
        all_nodes = self._snapshot()
        by_address = {n.raft_address: n for n in all_nodes}
        for address in sorted(in_raft):
            node = by_address.get(address)
            if node is not None and node.role != "voter":
                log.warning(
                    "raft counts %s as a voter, the cluster state does not: removing it", node.name
                )
                await self._raft.remove_voter(address, timeout=10.0)
        for node in all_nodes:
            if (
                node.role == "voter"
                and node.id != self._node_id
                and node.raft_address not in in_raft
            ):
                log.warning(
                    "the cluster state counts %s as a voter, raft does not: recording it "
                    "as a member",
                    node.name,
                )
                await self._commit_role(node, "member")
        await self._tell_returning_members(all_nodes, in_raft)

    async def _tell_returning_members(self, all_nodes: list[Node], in_raft: set[str]) -> None:
        """A voter demoted while it was down (or stalled) still runs as a voter when it
        returns, with the old voter set: tell it, once each time it comes back, that it is a
        member now, so it restarts its replica as one instead of calling elections nobody
        counts. Telling a node that already is a member changes nothing."""
        voters = sorted(v.raft_address for v in all_nodes if v.role == "voter")
        for node in all_nodes:
            if (
                node.role != "member"
                or not _alive(node)
                or node.raft_address in in_raft
                or self._told_member.get(node.id) == node.status_changed_at
            ):
                continue
            try:
                await self._tell_role(node, "member", voters)
            except (ApiError, Unreachable) as exc:
                log.info("could not tell member %s its role yet: %s", node.name, exc)
                continue
            self._told_member[node.id] = node.status_changed_at

    async def _promote(self, node: Node) -> None:
        voters = [v.raft_address for v in self._snapshot() if v.role == "voter"]
        await self._check_caught_up(node)
        adding = None
        if node.raft_address not in self._raft.status().partners:
            # Raft wants the new voter added before it starts as one; the add cannot commit
            # until the new voter answers, so tell it to restart while the add is pending.
            adding = asyncio.ensure_future(self._raft.add_voter(node.raft_address, timeout=15.0))
        try:
            await self._tell_role(node, "voter", voters + [node.raft_address])
            if adding is not None:
                await adding
            await self._commit_role(node, "voter")
        except BaseException:
            # Leave the voter set as it was: the add may be in the log already (or commit
            # after a timeout), so wait for it, take it back, and tell the node.
            if adding is not None:
                with contextlib.suppress(ProposeError, asyncio.TimeoutError):
                    await adding
            if node.raft_address in self._raft.status().partners:
                with contextlib.suppress(ProposeError, asyncio.TimeoutError):
                    await self._raft.remove_voter(node.raft_address, timeout=10.0)
            with contextlib.suppress(ApiError, Unreachable):
                await self._tell_role(node, "member", voters)
            raise

    async def _check_caught_up(self, node: Node, patience: float = CATCH_UP_PATIENCE) -> None:
        """A node commits its registration before its API is up, and may still be receiving
        the state: promote only one that answers, holds the state and hears this leader. A
        member whose replica just restarted (a demotion a moment ago) hears the leader again
        within a second or so: wait that long before refusing."""
        client = self._control.client_for(node)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while True:
            try:
                health = await client.get("/healthz")
            except ApiError as exc:  # 503 while it catches up
                reason = exc.message
            else:
                if not health.get("caught_up", False):
                    reason = str(health.get("sync"))
                elif health.get("leader") != self._raft.address:
                    reason = f"it does not hear this leader (it names {health.get('leader')!r})"
                else:
                    return
            if loop.time() >= deadline:
                raise NotCaughtUp(f"{node.name} is not ready to vote: {reason}")
            await asyncio.sleep(0.2)

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
            "/v1/internal/raft-role", {"role": role, "voters": sorted(set(voters))}
        )

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
            raise ValueError(f"node {node.name} is {node.status} and cannot become a voter")
        changes = [VoterChange("promote", node, "promoted by the operator")]
        # Keep the set odd: a manual promotion at the target replaces another voter.
        if len(voters) + 1 > target_voter_count(sum(1 for n in all_nodes if _alive(n))):
            others = sorted(
                (v for v in voters if v.id != self._node_id),
                key=lambda v: (_alive(v), -v.joined_at, v.id),
            )
            if others:
                changes.append(VoterChange("demote", others[0], f"replaced by {node.name}"))
        await self.apply(*changes)

    async def demote(self, node: Node) -> None:
        if node.role != "voter":
            return
        if node.id == self._node_id:
            raise ValueError(
                f"node {node.name} is the leader; demote it from another leader "
                f"after stopping it, or remove it"
            )
        all_nodes = self._snapshot()
        # The operator asked: a member whose promotion failed lately (which autopilot leaves
        # alone for a while) is still tried, last; if it fails again the swap is undone.
        skip = self._skip()
        members = sorted(
            (n for n in all_nodes if n.role != "voter" and _alive(n)),
            key=lambda n: (n.id in skip, n.joined_at, n.id),
        )
        if not members:
            others = [f"{n.name} is {n.status}" for n in all_nodes if n.role != "voter"]
            raise ValueError(
                f"no member can take {node.name}'s seat"
                + (f" ({', '.join(others)})" if others else "")
                + f"; the voter set must stay at {sum(1 for n in all_nodes if n.role == 'voter')}"
            )
        await self.apply(
            VoterChange("promote", members[0], f"replaces {node.name}"),
            VoterChange("demote", node, "demoted by the operator"),
        )
