"""The replicated cluster state machine: a pure, deterministic `apply`.

`apply` takes a decoded command and returns a `Result`; it never raises, reads no clock,
draws no random numbers and does no I/O: every id and timestamp arrives inside the command.
Handlers are registered per command type (a flat table, as Nomad's FSM), each in the module
that defines its command, and may only touch the tables of this object.
A snapshot is the msgpack of `to_plain()`; `from_plain` restores it exactly.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

import msgpack

from consensus import codec
from consensus.changes import Change, ChangeLog, TrackedTable, collect
from consensus.model import ClusterInfo
from consensus.wire import from_plain, to_plain

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 1
# How many request ids are remembered to make retried proposals idempotent.
REMEMBERED_REQUESTS = 4096


class PlainSnapshot(TypedDict):
    """A snapshot as `to_plain` makes it and msgpack carries it; `from_plain` checks each
    table row against its type."""

    format: int
    cluster: dict[str, Any]
    applied: int
    tables: dict[str, dict[str, Any]]
    requests: list[list[Any]]  # [request id, PlainResult] pairs


# A Result as the log's apply returns it and a forwarded write answers it:
# [ok, error, value, code, index].
PlainResult = list[Any]


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    error: str = ""
    value: Any = None
    # An error the caller made (400) rather than a conflict with current state (409).
    code: int = 200
    # The state's `applied` counter right after this command: a node that forwarded the
    # command waits until it has applied this much, so callers read their own writes.
    index: int = 0

    @staticmethod
    def fail(error: str, code: int = 409) -> Result:
        return Result(False, error, None, code)

    def to_plain(self) -> PlainResult:
        return [self.ok, self.error, self.value, self.code, self.index]

    @staticmethod
    def from_plain(raw: PlainResult) -> Result:
        return Result(*raw)


C = TypeVar("C")
Handler = Callable[["ClusterState", Any], Result]
_HANDLERS: dict[type, Handler] = {}
# table name -> value type, registered by the modules that own the tables.
_TABLES: dict[str, type] = {}


def handles(
    cmd_type: type[C],
) -> Callable[[Callable[[ClusterState, C], Result]], Callable[[ClusterState, C], Result]]:
    def register(fn: Callable[[ClusterState, C], Result]) -> Callable[[ClusterState, C], Result]:
        _HANDLERS[cmd_type] = fn
        return fn

    return register


def register_table(name: str, value_type: type) -> None:
    _TABLES[name] = value_type


class ClusterState:
    """All replicated state. Tables map an id to a frozen dataclass."""

    def __init__(self) -> None:
        self.cluster = ClusterInfo()
        # Rows the command being applied replaced, by (table, key): its Change is made of them.
        self._touched: dict[tuple[str, str], Any] = {}
        self.tables: dict[str, dict[str, Any]] = {name: self._tracked(name) for name in _TABLES}
        # Number of commands applied; reads on one node never see it go backwards.
        self.applied = 0
        self._requests: OrderedDict[str, Result] = OrderedDict()
        # What each of the last commands changed (consensus.changes), oldest first.
        self.changes = ChangeLog()

    def _tracked(self, name: str, rows: Iterable[tuple[str, Any]] = ()) -> TrackedTable:
        return TrackedTable(name, self._touched, rows)

    def table(self, name: str) -> dict[str, Any]:
        table = self.tables.get(name)
        if table is None:
            table = self.tables[name] = self._tracked(name)
        return table

    # -- applying ---------------------------------------------------------------------
    def apply(self, cmd: Any, request_id: str = "") -> Result:
        self.applied += 1
        try:
            return self._apply(cmd, request_id)
        finally:
            self.changes.append(collect(self.applied, cmd, self._touched, self.tables))

    def _apply(self, cmd: Any, request_id: str) -> Result:
        if request_id and request_id in self._requests:
            return self._requests[request_id]
        handler = _HANDLERS.get(type(cmd))
        if handler is None:
            result = Result.fail(f"no handler for {type(cmd).__name__}", 400)
        else:
            try:
                result = handler(self, cmd)
            except Exception as exc:  # a bug must not halt Raft: every node fails the same way
                log.exception("command %s failed", type(cmd).__name__)
                result = Result.fail(f"internal error applying {type(cmd).__name__}: {exc}", 500)
        result = dataclasses.replace(result, index=self.applied)
        if request_id:
            self._requests[request_id] = result
            while len(self._requests) > REMEMBERED_REQUESTS:
                self._requests.popitem(last=False)
        return result

    def apply_bytes(self, data: bytes) -> Result:
        """Decode and apply one log entry. Garbage gives an error result and changes nothing
        but the applied counter (which every node advances identically)."""
        try:
            env = codec.decode(data)
        except codec.CodecError as exc:
            self.applied += 1
            self.changes.append(Change(self.applied, 0.0, ()))
            return Result.fail(str(exc), 400)
        return self.apply(env.command, env.request_id)

    def trial_copy(self) -> ClusterState:
        """A copy to try commands on without changing this state: each table is copied,
        its rows (frozen) are shared."""
        trial = ClusterState()
        trial.cluster, trial.applied = self.cluster, self.applied
        trial.tables = {name: dict(rows) for name, rows in self.tables.items()}
        return trial

    def detached(self) -> ClusterState:
        """A copy that serialises as this state does, taken quickly under the replica's lock
        and serialised outside it while this state moves on (rows are frozen and shared)."""
        copy = self.trial_copy()
        copy._requests = OrderedDict(self._requests)
        return copy

    # -- snapshots --------------------------------------------------------------------
    def to_plain(self) -> PlainSnapshot:
        return {
            "format": SNAPSHOT_FORMAT,
            "cluster": to_plain(self.cluster),
            "applied": self.applied,
            # An empty table is left out: a table added by a newer release then reaches a
            # node of the release before (which refuses unknown tables) only once used.
            "tables": {
                name: {k: to_plain(v) for k, v in rows.items()}
                for name, rows in self.tables.items()
                if rows
            },
            "requests": [[rid, r.to_plain()] for rid, r in self._requests.items()],
        }

    @classmethod
    def from_plain(cls, raw: PlainSnapshot) -> ClusterState:
        if raw.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported snapshot format {raw.get('format')!r}")
        state = cls()
        state.cluster = from_plain(ClusterInfo, raw["cluster"])
        state.applied = raw["applied"]
        for name, rows in raw["tables"].items():
            value_type = _TABLES.get(name)
            if value_type is None:
                raise ValueError(f"snapshot has unknown table {name!r}")
            state.tables[name] = state._tracked(
                name, ((k, from_plain(value_type, v, f"{name}.{k}")) for k, v in rows.items())
            )
        state._requests = OrderedDict((rid, Result.from_plain(r)) for rid, r in raw["requests"])
        return state

    def to_msgpack(self) -> bytes:
        packed: bytes = msgpack.packb(self.to_plain(), use_bin_type=True)
        return packed

    @classmethod
    def from_msgpack(cls, data: bytes) -> ClusterState:
        return cls.from_plain(msgpack.unpackb(data, raw=False, strict_map_key=False))


class PlainState:
    """A state's msgpack opened as plain data, to change a few small tables (nodes, secrets)
    without decoding the large ones: decoding 100,000 tasks takes seconds, and a restore
    changes none of them. The format and the table names are checked as `from_plain` does."""

    def __init__(self, data: bytes) -> None:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if not isinstance(raw, dict) or raw.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(
                f"unsupported snapshot format "
                f"{raw.get('format') if isinstance(raw, dict) else None!r}"
            )
        unknown = sorted(set(raw.get("tables", {})) - set(_TABLES))
        if unknown:
            raise ValueError(f"snapshot has unknown table {unknown[0]!r}")
        self._raw = raw

    def rows(self, name: str) -> dict[str, Any]:
        return {
            k: from_plain(_TABLES[name], v, f"{name}.{k}")
            for k, v in self._raw["tables"].get(name, {}).items()
        }

    def set_rows(self, name: str, rows: dict[str, Any]) -> None:
        self._raw["tables"][name] = {k: to_plain(v) for k, v in rows.items()}

    @property
    def cluster(self) -> ClusterInfo:
        return from_plain(ClusterInfo, self._raw["cluster"])

    @cluster.setter
    def cluster(self, info: ClusterInfo) -> None:
        self._raw["cluster"] = to_plain(info)

    def to_msgpack(self) -> bytes:
        packed: bytes = msgpack.packb(self._raw, use_bin_type=True)
        return packed
