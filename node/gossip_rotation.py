"""Rotating the gossip key, in the order that never cuts a node off (memberlist's keyring
sequence, `consul keyring -install/-use/-remove`, done for the operator):

1. install a new key: every node accepts it, none seals with it yet;
2. once every live node announces it holds it, make it primary: each node seals with it as
   it applies the change, and every other node already opens it;
3. once every live node announces it seals with it, wait a grace period (packets sealed
   before are still on their way), then remove every other key: from then on a packet
   sealed with an old key is refused.

A node that is down meanwhile takes the ring from the state before it gossips again
(node.loops.gossip_keyring). A rotation that stops half-way (a node never answers, the
caller goes away) leaves a ring every node can still use; the next one removes what is left.
Keys never leave this module in clear: the state holds them sealed, progress names their ids.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from consensus.gossip_keys import (
    KEY_BYTES,
    GossipKey,
    InstallGossipKey,
    RemoveGossipKey,
    UseGossipKey,
    gossip_keys,
)
from consensus.nodes import nodes
from consensus.state import Result
from consensus.store import StateVersion
from netoverlay.gossip.keyring import key_id
from netoverlay.gossip.model import Member, MemberState
from netoverlay.gossip.service import GossipService
from node.loops.gossip_keyring import GossipKeyring, KeyReport, sealed_name

# Bounds of what a caller may ask for, in seconds.
MAX_GRACE = 300.0
MAX_WAIT = 300.0
_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)


class RotationError(Exception):
    """A step failed; `status` is the HTTP status that says so."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Progress:
    step: str  # "installed", "held", "primary", "grace", "removed", "done"
    key: str  # the id of the key the step is about
    detail: str
    elapsed: float  # seconds since the rotation began


def lagging(
    members: Iterable[Member], announced: Mapping[str, KeyReport], key: str, primary: bool
) -> list[str]:
    """The live nodes (alive or suspect in gossip) that have not announced holding `key`
    (as their primary key, with `primary`), by id."""
    behind = []
    for member in members:
        if member.state not in _LIVE:
            continue
        report = announced.get(member.node_id)
        holds = report is not None and (report.primary == key if primary else key in report.held)
        if not holds:
            behind.append(member.node_id)
    return sorted(behind)


class Rotation:
    def __init__(
        self,
        read_state: Callable[[], StateVersion],
        gossip: GossipService,
        keyring: GossipKeyring,
        submit: Callable[[object], Awaitable[Result]],
    ) -> None:
        self._read_state = read_state
        self._gossip = gossip
        self._keyring = keyring
        self._submit = submit

    async def run(self, grace: float, wait: float) -> AsyncGenerator[Progress, None]:
        """Rotate, yielding each step as it is done; RotationError when one fails."""
        if self._keyring.rotating.locked():
            raise RotationError("a rotation of the gossip key is already running on this node")
        async with self._keyring.rotating:
            began = time.monotonic()

            def progress(step: str, key: str, detail: str) -> Progress:
                return Progress(step, key, detail, round(time.monotonic() - began, 3))

            with self._read_state() as state:
                ring = dict(gossip_keys(state))
            if not ring:
                # The ring of a cluster that never rotated: the key derived from the cluster
                # secret, written down so that it can be taken out like any other.
                current, _ = self._gossip.keyring
                await self._propose(InstallGossipKey(GossipKey(current, b"", time.time())))
            key = secrets.token_bytes(KEY_BYTES)
            new = key_id(key)
            sealed = self._keyring.box.seal(sealed_name(new), key)
            await self._propose(InstallGossipKey(GossipKey(new, sealed, time.time())))
            yield progress("installed", new, "every node accepts it; none seals with it yet")
            count = await self._until_announced(new, primary=False, wait=wait)
            yield progress("held", new, f"every live node ({count}) holds it")
            await self._propose(UseGossipKey(new))
            count = await self._until_announced(new, primary=True, wait=wait)
            yield progress("primary", new, f"every live node ({count}) seals with it")
            if grace > 0:
                yield progress("grace", new, f"waiting {grace:g} s before removing the old keys")
                await asyncio.sleep(grace)
            with self._read_state() as state:
                old = sorted(k for k in gossip_keys(state) if k != new)
            for each in old:
                await self._propose(RemoveGossipKey(each))
                yield progress("removed", each, "packets sealed with it are refused from now on")
            yield progress("done", new, "the gossip key is rotated")

    async def _propose(self, command: object) -> None:
        result = await self._submit(command)
        if not result.ok:
            raise RotationError(result.error, result.code if result.code >= 400 else 409)

    async def _until_announced(self, key: str, *, primary: bool, wait: float) -> int:
        """Wait, woken by gossip changes, until every live node announces `key` (as primary);
        returns how many live nodes there are. RotationError (naming the nodes) on timeout."""
        wake = asyncio.Event()
        stop_listening = self._gossip.on_change(lambda _event: wake.set())
        try:
            async with asyncio.timeout(wait):
                while behind := self._behind(key, primary):
                    await wake.wait()
                    wake.clear()
        except TimeoutError:
            with self._read_state() as state:
                names = {n.id: n.name for n in nodes(state).values()}
            named = ", ".join(f"{names.get(i, '?')} ({i})" for i in behind[:10])
            held = "seal with" if primary else "hold"
            raise RotationError(
                f"{len(behind)} live node(s) did not announce that they {held} gossip key "
                f"{key} within {wait:g} s: {named}. The keyring still works on every node; "
                "check those nodes, then rotate again",
                503,
            ) from None
        finally:
            stop_listening()
        return sum(1 for m in self._gossip.members() if m.state in _LIVE)

    def _behind(self, key: str, primary: bool) -> list[str]:
        return lagging(self._gossip.members(), self._keyring.reports(), key, primary)
