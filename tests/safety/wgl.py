"""Linearizability of a register history: the Wing-Gong-Lowe search with Lowe's memo of
(linearized set, state), as Knossos and Porcupine run it (pure).

Each operation is a call event and a return event on one timeline. The search walks the
events: at a call it tries to linearize that operation now (its effect on the register must
explain its result) and, if the pair (operations linearized so far, register value) is new,
removes it from the timeline and starts over; at a return whose call was not linearized yet
it backtracks. The history is linearizable when the timeline empties.

An operation whose outcome is unknown (a write that timed out) gets a return at +infinity:
it may take effect at any point after its call, or never (placed after everything, it is
observed by nothing). Failed writes and reads without an answer are left out by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

State = Hashable


@dataclass(frozen=True, slots=True)
class RegisterOp:
    invoked_at: float
    completed_at: float  # math.inf when the outcome is unknown
    is_write: bool
    value: str | None  # written, or read (None: absent)
    label: str = ""  # how to name it in an explanation


@dataclass(frozen=True, slots=True)
class Verdict:
    linearizable: bool
    # On failure: the most operations any linearization attempt placed, and an operation
    # that no order could place at that point (the one to look at first).
    longest_prefix: int = 0
    stuck_at: RegisterOp | None = None


def register_step(state: State, op: RegisterOp) -> tuple[bool, State]:
    if op.is_write:
        return True, op.value
    return op.value == state, state


def check(
    ops: Sequence[RegisterOp],
    initial: State = None,
    step: Callable[[State, RegisterOp], tuple[bool, State]] = register_step,
) -> Verdict:
    n = len(ops)
    if n == 0:
        return Verdict(True)
    # Events sorted by time; at equal times calls come first (the two overlap).
    events = sorted(
        [(op.invoked_at, 0, i) for i, op in enumerate(ops)]
        + [(op.completed_at, 1, i) for i, op in enumerate(ops)]
    )
    # A doubly linked list over event slots 1..2n with a head sentinel at 0.
    size = 2 * n + 1
    nxt = list(range(1, size + 1))
    prv = list(range(-1, size - 1))
    nxt[size - 1] = -1
    is_call = [False] * size
    op_of = [0] * size
    match = [0] * size  # a call's return slot
    call_slot = [0] * n
    for slot, (_, kind, i) in enumerate(events, start=1):
        op_of[slot] = i
        if kind == 0:
            is_call[slot] = True
            call_slot[i] = slot
        else:
            match[call_slot[i]] = slot

    def lift(slot: int) -> None:
        for s in (slot, match[slot]):
            nxt[prv[s]] = nxt[s]
            if nxt[s] != -1:
                prv[nxt[s]] = prv[s]

    def unlift(slot: int) -> None:
        for s in (match[slot], slot):
            nxt[prv[s]] = s
            if nxt[s] != -1:
                prv[nxt[s]] = s

    linearized = 0
    state = initial
    seen: set[tuple[int, State]] = set()
    stack: list[tuple[int, State]] = []
    longest, stuck = 0, None
    entry = nxt[0]
    while nxt[0] != -1:
        if is_call[entry]:
            ok, new_state = step(state, ops[op_of[entry]])
            if ok:
                key = (linearized | (1 << op_of[entry]), new_state)
                if key not in seen:
                    seen.add(key)
                    stack.append((entry, state))
                    linearized, state = key
                    lift(entry)
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
            continue
        if len(stack) > longest or stuck is None:
            longest, stuck = max(longest, len(stack)), ops[op_of[entry]]
        if not stack:
            return Verdict(False, longest, stuck)
        entry, state = stack.pop()
        linearized &= ~(1 << op_of[entry])
        unlift(entry)
        entry = nxt[entry]
    return Verdict(True, n)
