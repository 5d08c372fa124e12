"""The history checker on hand-written broken histories, and on generated correct ones."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.safety.checker import (
    check_history,
    lost_writes,
    not_linearizable,
    reads_going_backwards,
    replica_violations,
    split_brain,
)
from tests.safety.history import (
    Completion,
    History,
    HistoryRecorder,
    Invocation,
    LeaderReport,
    Operation,
    OpKind,
    Outcome,
    TaskRecord,
    pair_operations,
)

_ids = iter(range(10**9))


def write(key, value, start, end, outcome=Outcome.OK, node="n0"):
    return Operation(next(_ids), 0, node, OpKind.WRITE, key, value, start, end, outcome)


def read(node, seq, start, end, value=None, key="k"):
    return Operation(next(_ids), 0, node, OpKind.READ, key, value, start, end, Outcome.OK, seq)


# -- lost writes ------------------------------------------------------------------------------


def test_an_acked_write_missing_from_the_final_state_is_lost():
    ops = [write("k", "v1", 0, 1)]
    [violation] = lost_writes(ops, {})
    assert (violation.check, violation.subject) == ("lost-write", "k")
    assert "'v1'" in violation.explanation


def test_an_acked_write_overwritten_by_a_later_write_is_not_lost():
    ops = [write("k", "v1", 0, 1), write("k", "v2", 2, 3)]
    assert lost_writes(ops, {"k": "v2"}) == []


def test_concurrent_writes_may_end_in_either_order():
    ops = [write("k", "v1", 0, 2), write("k", "v2", 1, 3)]
    assert lost_writes(ops, {"k": "v1"}) == [] and lost_writes(ops, {"k": "v2"}) == []


def test_a_final_value_from_a_write_that_finished_before_an_acked_write_began_means_a_loss():
    ops = [write("k", "v1", 0, 1), write("k", "v2", 2, 3)]
    [violation] = lost_writes(ops, {"k": "v1"})
    assert violation.check == "lost-write" and "'v2'" in violation.explanation


def test_unacknowledged_writes_may_or_may_not_survive():
    ops = [write("k", "v1", 0, None, Outcome.UNKNOWN), write("j", "v2", 0, 1, Outcome.UNKNOWN)]
    assert lost_writes(ops, {"k": "v1"}) == []


def test_a_failed_write_that_took_effect_and_a_value_nobody_wrote_are_reported():
    ops = [write("k", "v1", 0, 1, Outcome.FAIL)]
    checks = {v.check for v in lost_writes(ops, {"k": "v1", "j": "ghost"})}
    assert checks == {"failed-write-applied", "unknown-value"}


# -- split brain ------------------------------------------------------------------------------


def test_two_leaders_in_one_term_is_split_brain():
    reports = [
        LeaderReport("n0", 3, True, 1.0),
        LeaderReport("n1", 3, True, 2.0),
        LeaderReport("n2", 3, False, 2.0),
    ]
    [violation] = split_brain(reports)
    assert (
        violation.subject == "term 3"
        and "n0" in violation.explanation
        and "n1" in violation.explanation
    )


def test_one_leader_per_term_and_repeated_reports_are_fine():
    reports = [
        LeaderReport("n0", 3, True, 1.0),
        LeaderReport("n0", 3, True, 2.0),
        LeaderReport("n1", 4, True, 2.5),
        LeaderReport("n0", 3, True, 2.6),
    ]
    assert split_brain(reports) == []


# -- reads going backwards --------------------------------------------------------------------


def test_a_read_after_another_on_the_same_node_must_not_see_an_older_index():
    ops = [read("n1", 5, 0, 1), read("n1", 3, 2, 3)]
    [violation] = reads_going_backwards(ops)
    assert violation.subject == "n1" and "index 3" in violation.explanation


def test_overlapping_reads_and_reads_on_other_nodes_may_differ():
    ops = [read("n1", 5, 0, 2), read("n1", 3, 1, 3), read("n2", 1, 4, 5)]
    assert reads_going_backwards(ops) == []


# -- replicas ---------------------------------------------------------------------------------


def test_converged_services_pass():
    tasks = [
        TaskRecord("web", 0, "n0", "running"),
        TaskRecord("web", 1, "n1", "running"),
        TaskRecord("web", 2, "n2", "failed"),
    ]
    assert replica_violations(tasks, {"web": 2}) == []


def test_a_slot_running_twice_and_wrong_counts_are_reported():
    tasks = [
        TaskRecord("web", 0, "n0", "running"),
        TaskRecord("web", 0, "n1", "running"),
        TaskRecord("db", 0, "n2", "running"),
    ]
    found = {(v.check, v.subject) for v in replica_violations(tasks, {"web": 3})}
    assert found == {
        ("replica-count", "web"),
        ("slot-running-twice", "web.0"),
        ("replica-count", "db"),
    }


# -- recording --------------------------------------------------------------------------------


def test_an_invocation_without_completion_is_unknown_and_a_stray_completion_is_an_error():
    ticks = iter(range(100))
    recorder = HistoryRecorder(clock=lambda: next(ticks))
    first = recorder.invoke(0, "n0", OpKind.WRITE, "k", "v")
    recorder.invoke(1, "n1", OpKind.READ, "k")
    recorder.complete(first, Outcome.OK)
    ops = recorder.history({}).operations
    assert [(op.outcome, op.completed_at) for op in ops] == [
        (Outcome.OK, 2),
        (Outcome.UNKNOWN, None),
    ]
    with pytest.raises(ValueError, match="op_id"):
        pair_operations([Completion(7, Outcome.OK, 1.0)])
    with pytest.raises(ValueError, match="op_id"):
        pair_operations([Invocation(1, 0, "n0", OpKind.READ, "k", None, 0.0)] * 2)


# -- linearizability (WGL) ------------------------------------------------------------------


def test_a_read_after_a_completed_write_must_see_it_or_a_later_value():
    ops = [write("k", "v1", 0, 1), write("k", "v2", 2, 3), read("n1", 0, 4, 5, value="v1")]
    [violation] = not_linearizable(ops)
    assert (violation.check, violation.subject) == ("not-linearizable", "k")
    assert not_linearizable(ops[:2] + [read("n1", 0, 4, 5, value="v2")]) == []


def test_a_read_overlapping_a_write_may_see_either_value_but_reads_cannot_flip_back():
    ops = [
        write("k", "v1", 0, 1),
        write("k", "v2", 2, 10),
        read("n1", 0, 3, 4, value="v2"),
        read("n2", 0, 3, 4, value="v1"),
    ]
    assert not_linearizable(ops) == []
    # Once one read saw v2, a read that began after it ended cannot see v1 again.
    flipped = ops[:3] + [read("n2", 0, 5, 6, value="v1")]
    assert [v.subject for v in not_linearizable(flipped)] == ["k"]


def test_a_write_of_unknown_outcome_may_land_late_or_never_a_failed_one_never():
    unknown = write("k", "v2", 2, None, Outcome.UNKNOWN)
    seen_late = [write("k", "v1", 0, 1), unknown, read("n1", 0, 50, 51, value="v2")]
    never = [write("k", "v1", 0, 1), unknown, read("n1", 0, 50, 51, value="v1")]
    assert not_linearizable(seen_late) == [] and not_linearizable(never) == []
    failed = write("k", "v2", 2, 3, Outcome.FAIL)
    assert (
        not_linearizable([write("k", "v1", 0, 1), failed, read("n1", 0, 50, 51, value="v2")]) != []
    )


def test_an_absent_key_reads_as_none_until_written_and_keys_are_checked_apart():
    ops = [
        read("n1", 0, 0, 1, value=None),
        write("k", "v1", 2, 3),
        read("n1", 0, 4, 5, value=None),
        write("j", "w", 0, 1),
    ]
    assert [v.subject for v in not_linearizable(ops)] == ["k"]


# -- generated correct histories, then broken ones --------------------------------------------


@st.composite
def linearizable_histories(draw):
    """Random overlapping operations on one node whose effects happen at a point inside their
    interval (so the history is linearizable), with the final state of that execution."""
    count = draw(st.integers(1, 40))
    ops = []
    for index in range(count):
        start = draw(st.integers(0, 100))
        length = draw(st.integers(1, 20))
        point = start + draw(st.floats(0.01, 0.99)) * length
        kind = draw(st.sampled_from([OpKind.WRITE, OpKind.READ]))
        ops.append((point, index, start, start + length, kind, draw(st.sampled_from("abc"))))
    state, seq, operations = {}, 0, []
    for _point, index, start, end, kind, key in sorted(ops):
        if kind is OpKind.WRITE:
            value, seq = f"v{index}", seq + 1
            state[key] = value
            operations.append(
                Operation(index, index, "n0", kind, key, value, start, end, Outcome.OK)
            )
        else:
            operations.append(
                Operation(
                    index, index, "n0", kind, key, state.get(key), start, end, Outcome.OK, seq
                )
            )
    return History(tuple(sorted(operations, key=lambda op: op.op_id)), (), state)


@settings(max_examples=200, deadline=None)
@given(linearizable_histories())
def test_a_linearizable_history_has_no_violations(history):
    assert check_history(history) == []


@settings(max_examples=200, deadline=None)
@given(linearizable_histories(), st.data())
def test_dropping_a_surviving_acked_write_from_the_final_state_is_a_lost_write(history, data):
    if not history.final_state:
        return
    key = data.draw(st.sampled_from(sorted(history.final_state)))
    broken = {k: v for k, v in history.final_state.items() if k != key}
    assert [v.subject for v in lost_writes(history.operations, broken)].count(key) >= 1


@settings(max_examples=200, deadline=None)
@given(linearizable_histories(), st.data())
def test_a_read_rolled_back_below_an_earlier_completed_read_is_caught(history, data):
    reads = [op for op in history.operations if op.kind is OpKind.READ and op.read_seq > 0]
    if not reads:
        return
    earlier = data.draw(st.sampled_from(reads))
    late = read("n0", earlier.read_seq - 1, earlier.completed_at + 1, earlier.completed_at + 2)
    assert reads_going_backwards(history.operations + (late,)) != []
