"""Safety checks over a recorded history (pure): each returns the violations it found, explained.

- lost_writes: every acknowledged write is in the final state, or was superseded by a write
  to the same key that may have been ordered after it.
- split_brain: no two nodes claimed leadership of the same term.
- reads_going_backwards: on one node, a read that began after another read ended never saw
  an older applied index.
- replica_violations: every service runs exactly its desired count, no slot runs twice.
- not_linearizable: each key's reads and writes have a linearization (the WGL search of
  tests/safety/wgl.py): every read returns the value of the last write before it in one
  total order that respects real time.

Written values must be unique per history (the harness makes them so): a value in the final
state then names the one write that produced it.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tests.safety import wgl
from tests.safety.history import History, LeaderReport, Operation, OpKind, Outcome, TaskRecord


@dataclass(frozen=True, slots=True)
class Violation:
    check: str  # lost-write, failed-write-applied, unknown-value, split-brain, ...
    subject: str  # the key, term, node or service concerned
    explanation: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.subject}: {self.explanation}"


def _strictly_before(first: Operation, second: Operation) -> bool:
    """`first` completed before `second` was invoked: every correct system orders it first."""
    return first.completed_at is not None and first.completed_at < second.invoked_at


def lost_writes(operations: Iterable[Operation], final_state: Mapping[str, str]) -> list[Violation]:
    writes = [op for op in operations if op.kind is OpKind.WRITE]
    by_value = {(op.key, op.value): op for op in writes}
    violations = []
    for key, value in sorted(final_state.items()):
        writer = by_value.get((key, value))
        if writer is None:
            violations.append(
                Violation("unknown-value", key, f"final value {value!r} was written by no client")
            )
        elif writer.outcome is Outcome.FAIL:
            violations.append(
                Violation(
                    "failed-write-applied",
                    key,
                    f"final value comes from {writer.describe()}, "
                    "which was reported as not applied",
                )
            )
    for write in writes:
        if write.outcome is not Outcome.OK:
            continue
        final = final_state.get(write.key)
        if final == write.value:
            continue
        if final is None:
            violations.append(
                Violation(
                    "lost-write",
                    write.key,
                    f"acknowledged {write.describe()} but the key is absent from the final state",
                )
            )
            continue
        winner = by_value.get((write.key, final))
        if winner is not None and winner.outcome is Outcome.OK and _strictly_before(winner, write):
            violations.append(
                Violation(
                    "lost-write",
                    write.key,
                    f"acknowledged {write.describe()} was lost: the final "
                    f"value comes from {winner.describe()}, which completed "
                    "before it began",
                )
            )
    return violations


def split_brain(reports: Iterable[LeaderReport]) -> list[Violation]:
    leaders: dict[int, dict[str, LeaderReport]] = defaultdict(dict)
    for report in reports:
        if report.is_leader:
            leaders[report.term].setdefault(report.node, report)
    return [
        Violation(
            "split-brain",
            f"term {term}",
            "nodes "
            + ", ".join(f"{node} (at {r.at:.3f})" for node, r in sorted(claims.items()))
            + " each claimed to lead this term",
        )
        for term, claims in sorted(leaders.items())
        if len(claims) > 1
    ]


def reads_going_backwards(operations: Iterable[Operation]) -> list[Violation]:
    """For each node, sweep its reads in invocation order while tracking the highest index
    seen by reads that had already completed: a read below that went backwards."""
    reads: dict[str, list[Operation]] = defaultdict(list)
    for op in operations:
        if op.kind is OpKind.READ and op.outcome is Outcome.OK and op.read_seq is not None:
            reads[op.node].append(op)
    violations = []
    for node, ops in sorted(reads.items()):
        by_completion = sorted(ops, key=lambda op: op.completed_at)
        completion_times = [op.completed_at for op in by_completion]
        highest: Operation | None = None
        done = 0
        for read in sorted(ops, key=lambda op: op.invoked_at):
            # every read that completed strictly before this one was invoked
            upto = bisect.bisect_left(completion_times, read.invoked_at)
            for earlier in by_completion[done:upto]:
                if highest is None or earlier.read_seq > highest.read_seq:
                    highest = earlier
            done = max(done, upto)
            if highest is not None and read.read_seq < highest.read_seq:
                violations.append(
                    Violation(
                        "read-went-backwards",
                        node,
                        f"{read.describe()} saw index {read.read_seq} after {highest.describe()} "
                        f"had seen index {highest.read_seq}",
                    )
                )
    return violations


def replica_violations(tasks: Sequence[TaskRecord], desired: Mapping[str, int]) -> list[Violation]:
    running: dict[str, list[TaskRecord]] = defaultdict(list)
    for task in tasks:
        if task.state == "running":
            running[task.service].append(task)
    violations = []
    for service in sorted(set(desired) | set(running)):
        want, have = desired.get(service, 0), running.get(service, [])
        if len(have) != want:
            violations.append(
                Violation("replica-count", service, f"{len(have)} running, desired {want}")
            )
        nodes_by_slot: dict[int, list[str]] = defaultdict(list)
        for task in have:
            nodes_by_slot[task.slot].append(task.node)
        for slot, nodes in sorted(nodes_by_slot.items()):
            if len(nodes) > 1:
                violations.append(
                    Violation(
                        "slot-running-twice",
                        f"{service}.{slot}",
                        f"running on {len(nodes)} nodes at once: " + ", ".join(sorted(nodes)),
                    )
                )
    return violations


def _register_op(op: Operation) -> wgl.RegisterOp:
    # A write that may or may not have landed can take effect any time after its call.
    end = op.completed_at if op.outcome is Outcome.OK else math.inf
    return wgl.RegisterOp(
        op.invoked_at,
        math.inf if end is None else end,
        op.kind is OpKind.WRITE,
        op.value,
        op.describe(),
    )


def not_linearizable(
    operations: Iterable[Operation], initial: Mapping[str, str] | None = None
) -> list[Violation]:
    """Keys whose history has no linearization (a register per key, absent at first unless
    `initial` says otherwise). Failed writes never happened; reads without an answer
    observed nothing."""
    by_key: dict[str, list[wgl.RegisterOp]] = defaultdict(list)
    for op in operations:
        if (
            op.kind is OpKind.WRITE
            and op.outcome is not Outcome.FAIL
            or op.kind is OpKind.READ
            and op.outcome is Outcome.OK
        ):
            by_key[op.key].append(_register_op(op))
    violations = []
    for key, ops in sorted(by_key.items()):
        verdict = wgl.check(ops, (initial or {}).get(key))
        if not verdict.linearizable:
            violations.append(
                Violation(
                    "not-linearizable",
                    key,
                    f"no order of its {len(ops)} operations explains every read: at most "
                    f"{verdict.longest_prefix} could be placed, then "
                    f"{verdict.stuck_at.label if verdict.stuck_at else '?'} had to complete "
                    f"first",
                )
            )
    return violations


def check_history(history: History) -> list[Violation]:
    """The four checks a key-value history supports (replicas need the task list)."""
    return (
        lost_writes(history.operations, history.final_state)
        + split_brain(history.leaders)
        + reads_going_backwards(history.operations)
        + not_linearizable(history.operations)
    )
