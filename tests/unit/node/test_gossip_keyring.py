"""The node's side of the gossip keyring, without I/O: the ring the state's rows give, what
nodes announced, and which live nodes a rotation still waits for."""

from __future__ import annotations

import logging

from consensus.gossip_keys import GossipKey
from netoverlay.gossip.keyring import key_id
from netoverlay.gossip.model import Member, MemberState, TableEntry
from node.gossip_rotation import lagging
from node.loops.gossip_keyring import REPORT_KEY, KeyReport, reports, ring_of, sealed_name
from node.secret_box import SecretBox

SECRET = b"s" * 32
NEW = bytes(range(32))
BOX = SecretBox(SECRET)


def row(key: bytes, primary: bool = False, derived: bool = False) -> GossipKey:
    sealed = b"" if derived else BOX.seal(sealed_name(key_id(key)), key)
    return GossipKey(key_id(key), sealed, 1.0, primary)


def test_no_rows_is_the_cluster_secret_alone():
    spec = ring_of([], SECRET, BOX)
    assert (spec.primary, dict(spec.keys)) == (key_id(SECRET), {key_id(SECRET): SECRET})


def test_rows_open_into_the_ring_with_its_primary():
    spec = ring_of([row(SECRET, derived=True), row(NEW, primary=True)], SECRET, BOX)
    assert spec.primary == key_id(NEW)
    assert dict(spec.keys) == {key_id(SECRET): SECRET, key_id(NEW): NEW}


def test_a_row_that_does_not_open_is_left_out_and_logged_without_its_key(caplog):
    other_cluster = SecretBox(b"o" * 32).seal(sealed_name(key_id(NEW)), NEW)
    moved = GossipKey(key_id(SECRET), BOX.seal(sealed_name(key_id(NEW)), NEW), 1.0)
    rows = [row(SECRET, derived=True, primary=True), GossipKey(key_id(NEW), other_cluster, 1.0)]
    with caplog.at_level(logging.ERROR):
        spec = ring_of([*rows, moved], SECRET, BOX)
    assert dict(spec.keys) == {key_id(SECRET): SECRET}
    assert key_id(NEW) in caplog.text and NEW.hex() not in caplog.text


def test_a_primary_that_does_not_open_leaves_a_ring_that_still_seals():
    broken = GossipKey(key_id(NEW), b"\x01" * len(row(NEW).sealed), 1.0, primary=True)
    spec = ring_of([row(SECRET, derived=True), broken], SECRET, BOX)
    assert spec.primary == key_id(SECRET)


def entry(owner: str, value, key: str = REPORT_KEY) -> TableEntry:
    return TableEntry(owner, key, 1, value)


def test_reports_read_what_nodes_announced_and_ignore_other_shapes():
    found = reports(
        [
            entry("a", {"primary": "k1", "held": ["k1", "k2", 3]}),
            entry("b", {"primary": 7, "held": []}),
            entry("c", "junk"),
            entry("d", {"primary": "k1", "held": ["k1"]}, key="ep/task"),
        ]
    )
    assert found == {"a": KeyReport("k1", frozenset({"k1", "k2"}))}


def member(node_id: str, state: MemberState = MemberState.ALIVE) -> Member:
    return Member(node_id, ("127.0.0.1", 1), state=state)


def test_a_rotation_waits_for_live_nodes_only():
    members = [
        member("a"),
        member("b", MemberState.SUSPECT),
        member("c", MemberState.DEAD),
        member("d", MemberState.LEFT),
    ]
    announced = {
        "a": KeyReport("old", frozenset({"old", "new"})),
        "b": KeyReport("old", frozenset({"old"})),
    }
    assert lagging(members, announced, "new", primary=False) == ["b"]
    assert lagging(members, announced, "new", primary=True) == ["a", "b"]
    announced["b"] = KeyReport("new", frozenset({"old", "new"}))
    assert lagging(members, announced, "new", primary=False) == []
    assert lagging(members, {}, "new", primary=False) == ["a", "b"]
