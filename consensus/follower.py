"""What a non-voting member runs instead of a Raft replica: a follower of a voter's feed
(the node's feed client). RaftNode serves reads from it and asks it for what a replica
would answer, so the rest of the node sees one surface whatever the role."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from consensus.store import StateVersion

if TYPE_CHECKING:
    from consensus.raft import RaftStatus, SyncProgress


class Follower(Protocol):
    @property
    def version(self) -> StateVersion: ...

    def progress(self) -> SyncProgress: ...

    def status(self) -> RaftStatus: ...

    def leader(self) -> str | None: ...

    async def read_index(self, timeout: float) -> int: ...

    def stop(self) -> None: ...


# Starts a follower of the voters at these Raft addresses; it calls `notify` (on the event
# loop) after every change of its state or of the leader it knows.
StartFollower = Callable[[list[str], Callable[[], None]], Follower]
