"""A member's copy of the state, built from a voter's feed (consensus.feed_wire) with the
state machine the voters run: a snapshot replaces it, entries apply in order, and a version
for readers is published after each frame. No I/O: the node's feed client drives it."""

from __future__ import annotations

from consensus.feed_wire import Entries, FeedError, Snapshot
from consensus.state import ClusterState
from consensus.store import StateVersion, next_version, version_of


class FeedState:
    def __init__(self) -> None:
        self._state = ClusterState()
        self.version: StateVersion = version_of(self._state)
        self.snapshots = 0

    @property
    def applied(self) -> int:
        return self._state.applied

    def restore(self, snapshot: Snapshot, decoded: ClusterState | None = None) -> None:
        """Replace the copy with `snapshot`; `decoded` is its state when the caller decoded it
        already (off its event loop: a whole state takes long to decode)."""
        state = decoded if decoded is not None else ClusterState.from_msgpack(snapshot.state)
        if state.applied != snapshot.applied:
            raise FeedError(
                f"snapshot says {snapshot.applied} commands but holds a state of {state.applied}"
            )
        if state.applied < self._state.applied:
            # A voter behind this copy: readers must never see the state go backwards.
            raise FeedError(
                f"snapshot at {state.applied} is older than this copy at {self._state.applied}"
            )
        self._state = state
        self.version = version_of(state)
        self.snapshots += 1

    def apply(self, entries: Entries) -> None:
        """Apply the entries this copy has not applied yet; a gap is a FeedError."""
        skip = self._state.applied + 1 - entries.first
        if skip < 0:
            raise FeedError(
                f"entries start at {entries.first} but this copy has applied {self.applied}"
            )
        for command in entries.commands[skip:]:
            self._state.apply_bytes(command)
        self.version = next_version(self.version, self._state)
