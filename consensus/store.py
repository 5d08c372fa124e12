"""The one read path to the replicated state: immutable versions, published whole.

The Raft thread applies commands to its own `ClusterState` and then publishes a new
`StateVersion`: a copy of each table the commands changed (rows are frozen and shared, so a
table of 100,000 tasks copies in about a millisecond), the previous version's other tables,
and the indexes updated from the commands' row changes alone. It publishes once per batch
of committed entries it applies, so under load one copy serves more commands. Publishing is
one reference assignment, atomic in Python: a reader takes the current version with no lock
and keeps a complete, consistent state however long it holds it, while the next commands
apply.
Tables and indexes are read-only mappings and rows frozen dataclasses: a version cannot be
changed, only replaced.

Each version also carries the changes of the last commands (consensus.changes), so a loop
learns what changed since the version it last read from the applied commands themselves
(node.events), not by comparing two versions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from consensus.changes import Change, covering
from consensus.model import ClusterInfo
from consensus.state import ClusterState

if TYPE_CHECKING:
    from consensus.raft import RaftNode

_EMPTY: Mapping[str, Any] = MappingProxyType({})
# (table, field) of every index: rows of `table` grouped by their `field`.
_INDEXES: list[tuple[str, str]] = []

Index = Mapping[str, Mapping[str, Any]]  # field value -> {row key: row}


def register_index(table: str, field: str) -> None:
    """Keep `table`'s rows grouped by `field` in every version (rows whose field is empty
    are left out): `StateVersion.indexed(table, field, value)` is then as cheap as the group."""
    if (table, field) not in _INDEXES:
        _INDEXES.append((table, field))


@dataclass(frozen=True, slots=True)
class StateVersion:
    """The replicated state after `applied` commands, read-only. It reads as a ClusterState
    does (`table(name)`, `cluster`, `applied`), so every accessor of consensus works on it.
    A `with` block may hold it, to mark where a caller reads; it holds no lock."""

    cluster: ClusterInfo
    applied: int
    tables: Mapping[str, Mapping[str, Any]]
    indexes: Mapping[tuple[str, str], Index]
    # What the last commands changed, oldest first, up to `applied`.
    changes: tuple[Change, ...] = ()

    def table(self, name: str) -> Mapping[str, Any]:
        return self.tables.get(name, _EMPTY)

    def indexed(self, table: str, field: str, value: str) -> Mapping[str, Any]:
        """The rows of `table` whose `field` is `value`, by key (a registered index)."""
        return self.indexes[(table, field)].get(value, _EMPTY)

    def shares(self, other: StateVersion | None, *tables: str) -> bool:
        """Whether `other` holds these very `tables`: a version shares every table the
        commands since left unchanged, so a loop that reads only these can tell that the
        commits since were about other rows by references, without reading any row."""
        return other is not None and all(self.table(t) is other.table(t) for t in tables)

    def trial_copy(self) -> ClusterState:
        """A mutable copy to try commands on (ClusterState's, which reads only `cluster`,
        `applied` and `tables`)."""
        return ClusterState.trial_copy(self)  # type: ignore[arg-type]

    def detached(self) -> ClusterState:
        """A ClusterState of this version that serialises as the state does (a snapshot, a
        replayed log): tables copied, rows (frozen) shared; without the replica's record of
        answered requests, which only the live replica needs."""
        return self.trial_copy()

    def __enter__(self) -> StateVersion:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def version_of(state: ClusterState) -> StateVersion:
    """A version of the whole of `state`, indexes built by one pass over the indexed tables
    (at start and after a snapshot is restored)."""
    tables = {name: MappingProxyType(dict(rows)) for name, rows in state.tables.items()}
    indexes = {}
    for table, field in _INDEXES:
        groups: dict[str, dict[str, Any]] = defaultdict(dict)
        for key, row in state.table(table).items():
            if value := getattr(row, field):
                groups[value][key] = row
        indexes[(table, field)] = _frozen_groups(groups)
    return StateVersion(
        state.cluster,
        state.applied,
        MappingProxyType(tables),
        MappingProxyType(indexes),
        state.changes.snapshot(),
    )


def next_version(previous: StateVersion, state: ClusterState) -> StateVersion:
    """The version of `state` built from `previous` and the changes of the commands applied
    since: only the tables and index groups they touched are copied. (Built whole when the
    state no longer holds all those changes.)"""
    count = state.applied - previous.applied
    if count == 0:
        return previous
    kept = state.changes.snapshot()
    changes = covering(kept[-count:], previous.applied, state.applied) if count > 0 else None
    if changes is None:
        return version_of(state)
    rows = [row for change in changes for row in change.rows]
    changed = {row.table for row in rows}
    tables: Mapping[str, Mapping[str, Any]] = previous.tables
    indexes: Mapping[tuple[str, str], Index] = previous.indexes
    if changed:
        tables = MappingProxyType(
            {
                **previous.tables,
                **{name: MappingProxyType(dict(state.table(name))) for name in changed},
            }
        )
        indexes = MappingProxyType(
            {
                (table, field): _regrouped(index, field, [r for r in rows if r.table == table])
                if table in changed
                else index
                for (table, field), index in previous.indexes.items()
            }
        )
    return StateVersion(state.cluster, state.applied, tables, indexes, kept)


def _regrouped(index: Index, field: str, rows: list[Any]) -> Index:
    """`index` with changed rows (in the order they changed) moved to their new groups."""
    groups: dict[str, dict[str, Any]] = {}

    def group(value: str) -> dict[str, Any]:
        if value not in groups:
            # A proxy's copy() is its dict's: C speed, where dict(proxy) goes key by key.
            groups[value] = _copied(index.get(value, _EMPTY))
        return groups[value]

    for row in rows:
        old = getattr(row.before, field) if row.before is not None else ""
        new = getattr(row.after, field) if row.after is not None else ""
        if old and old != new:
            group(old).pop(row.key, None)
        if new:  # a row that stays in its group keeps its place there
            group(new)[row.key] = row.after
    merged: dict[str, Mapping[str, Any]] = _copied(index)
    for value, members in groups.items():
        if members:
            merged[value] = MappingProxyType(members)
        else:
            merged.pop(value, None)
    return MappingProxyType(merged)


def _copied(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A dict of `mapping` (a MappingProxyType of the store's: its copy() is its dict's)."""
    assert isinstance(mapping, MappingProxyType)
    return mapping.copy()


def _frozen_groups(groups: Mapping[str, dict[str, Any]]) -> Index:
    return MappingProxyType({value: MappingProxyType(rows) for value, rows in groups.items()})


class Store:
    """What the rest of a node reads the replicated state through: `view()` is the current
    version, taken with no lock however busy the Raft thread is. (Writes are commands
    committed through the leader: node.control.)"""

    def __init__(self, raft: RaftNode) -> None:
        self._raft = raft

    def view(self) -> StateVersion:
        return self._raft.view()
