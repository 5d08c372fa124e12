"""What each applied command changed, row by row: the replicated record events are made of.

Every node applies the same commands in the same order, so the change of command N (the
state's `applied` counter after it) is the same everywhere: events derived from it can be
numbered by N and their place within it, and those numbers mean the same on every node.
Tables record the row a command is about to replace or remove (rows are frozen, so keeping
the old object is enough); the state turns that into a `Change` once the command is done.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Optional

# How many commands' changes a state keeps, and how many changed rows in all: enough for an
# event feed a burst of commits behind, and a bound on memory however large one command was
# (a scale-up to a million replicas). Not in snapshots: a restored state starts with none.
CHANGES_KEPT = 4096
CHANGED_ROWS_KEPT = 200_000
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class RowChange:
    table: str
    key: str
    before: Any  # None: the command added the row
    after: Any  # None: the command removed it


@dataclass(frozen=True, slots=True)
class Change:
    index: int  # the state's `applied` counter right after the command
    at: float  # the time the command carries (its `at`), 0.0 if it carries none
    rows: tuple[RowChange, ...]


class ChangeLog:
    """The last changes, oldest first, within CHANGES_KEPT commands and CHANGED_ROWS_KEPT rows
    (the newest change is always kept)."""

    def __init__(self) -> None:
        self._changes: deque[Change] = deque()
        self._rows = 0

    def append(self, change: Change) -> None:
        self._changes.append(change)
        self._rows += len(change.rows)
        while len(self._changes) > 1 and (len(self._changes) > CHANGES_KEPT
                                          or self._rows > CHANGED_ROWS_KEPT):
            self._rows -= len(self._changes.popleft().rows)

    def snapshot(self) -> tuple[Change, ...]:
        return tuple(self._changes)


class TrackedTable(dict):
    """A table that notes, in `touched`, each row's value before the command being applied
    first wrote it. Reads are plain dict reads."""

    __slots__ = ("name", "touched")

    def __init__(self, name: str, touched: dict[tuple[str, str], Any],
                 rows: Iterable[tuple[str, Any]] = ()) -> None:
        super().__init__(rows)
        self.name, self.touched = name, touched

    def _note(self, key: str) -> None:
        if (self.name, key) not in self.touched:
            self.touched[(self.name, key)] = dict.get(self, key, _ABSENT)

    def __setitem__(self, key: str, value: Any) -> None:
        self._note(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._note(key)
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        self._note(key)
        return super().pop(key, *default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def popitem(self) -> tuple[str, Any]:
        key = next(reversed(self))
        return key, self.pop(key)

    def clear(self) -> None:
        for key in list(self):
            self._note(key)
        super().clear()


def collect(index: int, cmd: Any, touched: dict[tuple[str, str], Any],
            tables: dict[str, dict[str, Any]]) -> Change:
    """The change the command that left `touched` made; empties `touched`."""
    rows = []
    for (table, key), before in touched.items():
        after = tables[table].get(key, _ABSENT)
        if after is not before:
            rows.append(RowChange(table, key, None if before is _ABSENT else before,
                                  None if after is _ABSENT else after))
    touched.clear()
    at = getattr(cmd, "at", 0.0)
    return Change(index, at if isinstance(at, float) else 0.0, tuple(rows))


def covering(changes: Iterable[Change], after: int, upto: int) -> Optional[list[Change]]:
    """The changes of commands after..upto (exclusive, inclusive), or None when `changes`
    does not hold all of them."""
    wanted = [c for c in changes if after < c.index <= upto]
    if len(wanted) != upto - after or (wanted and wanted[0].index != after + 1):
        return None
    return wanted
