"""A recorded history of a distributed test: client operations, leader reports, final state.

Clients record an `Invocation` when they send an operation and a `Completion` when they learn
its outcome; `pair_operations` joins them into `Operation`s for the checker. An operation that
never completed (the client gave up, or the run ended) has outcome UNKNOWN: it may or may not
have taken effect, exactly like a request whose reply was lost.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field


class OpKind(enum.Enum):
    WRITE = "write"
    READ = "read"


class Outcome(enum.Enum):
    OK = "ok"  # acknowledged: a write took effect, a read returned `value`
    FAIL = "fail"  # definitely did not take effect (rejected before it was proposed)
    UNKNOWN = "unknown"  # timed out, connection lost, or never completed


@dataclass(frozen=True, slots=True)
class Invocation:
    op_id: int
    client: int
    node: str
    kind: OpKind
    key: str
    value: str | None  # the value written; None for reads
    at: float


@dataclass(frozen=True, slots=True)
class Completion:
    op_id: int
    outcome: Outcome
    at: float
    value: str | None = None  # the value a read returned (None: key absent)
    read_seq: int | None = None  # the node's applied index / version the read was served at
    error: str = ""


@dataclass(frozen=True, slots=True)
class Operation:
    op_id: int
    client: int
    node: str
    kind: OpKind
    key: str
    value: str | None  # written value, or value read
    invoked_at: float
    completed_at: float | None  # None: never completed
    outcome: Outcome
    read_seq: int | None = None
    error: str = ""

    def describe(self) -> str:
        when = f"{self.invoked_at:.3f}..{'?' if self.completed_at is None else f'{self.completed_at:.3f}'}"
        return (
            f"op {self.op_id} ({self.kind.value} {self.key}={self.value!r} by client "
            f"{self.client} via {self.node}, {when}, {self.outcome.value})"
        )


@dataclass(frozen=True, slots=True)
class LeaderReport:
    """What one node said about itself at one moment: its term and whether it leads it."""

    node: str
    term: int
    is_leader: bool
    at: float


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task in the final state of an orchestrator run."""

    service: str
    slot: int
    node: str
    state: str  # "running" counts; anything else (pending, failed, stopped...) does not


@dataclass(frozen=True, slots=True)
class History:
    operations: tuple[Operation, ...]
    leaders: tuple[LeaderReport, ...] = ()
    final_state: Mapping[str, str] = field(default_factory=dict)


def pair_operations(events: Iterable[Invocation | Completion]) -> tuple[Operation, ...]:
    """Join invocations with their completions; an invocation left alone becomes UNKNOWN."""
    invocations: dict[int, Invocation] = {}
    completions: dict[int, Completion] = {}
    for event in events:
        table = invocations if isinstance(event, Invocation) else completions
        if event.op_id in table:
            raise ValueError(f"op_id: {event.op_id} recorded twice as {type(event).__name__}")
        table[event.op_id] = event
    orphans = sorted(set(completions) - set(invocations))
    if orphans:
        raise ValueError(f"op_id: completions without an invocation: {orphans[:10]}")
    operations = []
    for op_id, inv in sorted(invocations.items()):
        done = completions.get(op_id)
        read_value = done.value if done is not None else None
        operations.append(
            Operation(
                op_id=op_id,
                client=inv.client,
                node=inv.node,
                kind=inv.kind,
                key=inv.key,
                value=inv.value if inv.kind is OpKind.WRITE else read_value,
                invoked_at=inv.at,
                completed_at=done.at if done else None,
                outcome=done.outcome if done else Outcome.UNKNOWN,
                read_seq=done.read_seq if done else None,
                error=done.error if done else "",
            )
        )
    return tuple(operations)


class HistoryRecorder:
    """Collects events as they happen; `clock` is injectable so tests can replay exact times."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._events: list[Invocation | Completion] = []
        self._leaders: list[LeaderReport] = []
        self._next_id = 0

    def invoke(
        self, client: int, node: str, kind: OpKind, key: str, value: str | None = None
    ) -> int:
        op_id = self._next_id
        self._next_id += 1
        self._events.append(Invocation(op_id, client, node, kind, key, value, self._clock()))
        return op_id

    def complete(
        self,
        op_id: int,
        outcome: Outcome,
        *,
        value: str | None = None,
        read_seq: int | None = None,
        error: str = "",
    ) -> None:
        self._events.append(Completion(op_id, outcome, self._clock(), value, read_seq, error))

    def leader(self, node: str, term: int, is_leader: bool) -> None:
        self._leaders.append(LeaderReport(node, term, is_leader, self._clock()))

    @property
    def events(self) -> tuple[Invocation | Completion, ...]:
        return tuple(self._events)

    def history(self, final_state: Mapping[str, str]) -> History:
        return History(pair_operations(self._events), tuple(self._leaders), dict(final_state))
