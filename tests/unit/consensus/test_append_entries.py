"""A follower truncates its log only where an entry really conflicts with the leader's."""

from __future__ import annotations

from consensus.append_entries import PROBE_TERM, reconcile

# The follower's log: index -> term (indices 1..6).
LOG = {1: 1, 2: 1, 3: 2, 4: 2, 5: 2, 6: 2}


def _message(prev: int, prev_term: int, *entries: tuple[int, int]) -> dict:
    return {
        "type": "append_entries",
        "term": 3,
        "commit_index": 2,
        "prevLogIdx": prev,
        "prevLogTerm": prev_term,
        "entries": [(b"x", i, t) for i, t in entries],
    }


def _reconcile(message: dict, log: dict = LOG) -> dict:
    return reconcile(message, max(log), log.get)


def test_a_resent_append_entries_shorter_than_the_log_deletes_nothing():
    # pysyncobj alone would delete 3..6, although 5 and 6 match and were acknowledged.
    seen = _reconcile(_message(2, 1, (3, 2), (4, 2)))
    assert seen["entries"] == [] and seen["prevLogIdx"] == 5
    assert seen["prevLogTerm"] == PROBE_TERM  # answered with "send from 5", a reset


def test_entries_already_held_are_skipped_and_new_ones_appended_after_the_log():
    seen = _reconcile(_message(2, 1, (3, 2), (4, 2), (5, 2), (6, 2), (7, 3)))
    assert (seen["prevLogIdx"], seen["prevLogTerm"]) == (6, 2)
    assert [e[1] for e in seen["entries"]] == [7]
    exact = _reconcile(_message(4, 2, (5, 2), (6, 2)))
    assert (exact["prevLogIdx"], exact["entries"]) == (6, [])


def test_a_real_conflict_is_passed_on_from_the_conflicting_entry():
    seen = _reconcile(_message(2, 1, (3, 2), (4, 3), (5, 3)))
    assert (seen["prevLogIdx"], seen["prevLogTerm"]) == (3, 2)
    assert [(e[1], e[2]) for e in seen["entries"]] == [(4, 3), (5, 3)]


def test_heartbeats_mismatches_snapshots_and_other_messages_pass_unchanged():
    for message in (
        _message(2, 1),  # empty: the leader's log ends
        _message(2, 9, (3, 2)),  # prev mismatch: pysyncobj resets
        _message(6, 2, (7, 3)),  # nothing after prev
        _message(2, 1, (3, 5)),  # conflict at the first entry
        {"type": "append_entries", "term": 3, "commit_index": 1, "serialized": b"..."},
        {**_message(2, 1, (3, 2)), "transmission": "start"},
        {"type": "request_vote", "term": 4},
    ):
        assert _reconcile(message) == message


def test_a_pysyncobj_follower_keeps_its_entries_when_an_append_entries_is_resent():
    from pysyncobj import SyncObj, SyncObjConf

    import consensus.raft as raft
    from tests.unit.consensus.test_raft_changes import free_port

    leader_address = f"127.0.0.1:{free_port()}"
    follower = SyncObj(f"127.0.0.1:{free_port()}", [leader_address], SyncObjConf(autoTick=False))
    try:
        raft._filter_messages(follower, None)
        (leader,) = follower.otherNodes
        transport = getattr(follower, raft._TRANSPORT)
        journal = getattr(follower, raft._RAFT_LOG)

        def deliver(prev: int, prev_term: int, *entries: tuple[int, int]) -> None:
            transport._onMessageReceived(
                leader, {**_message(prev, prev_term, *entries), "term": 1, "commit_index": 1}
            )

        deliver(1, 0, (2, 1), (3, 1), (4, 1))
        assert [e[1] for e in journal] == [1, 2, 3, 4]
        deliver(1, 0, (2, 1))  # late copy of an earlier message
        assert [e[1] for e in journal] == [1, 2, 3, 4]
        deliver(2, 1, (3, 1), (4, 2), (5, 2))  # a leader of term 2 replaced entry 4
        assert [(e[1], e[2]) for e in journal] == [(1, 0), (2, 1), (3, 1), (4, 2), (5, 2)]
    finally:
        follower.destroy()
