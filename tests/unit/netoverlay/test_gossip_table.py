"""The disseminated table's merge: deterministic whatever the order, duplicates harmless."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from netoverlay.gossip.model import TableEntry
from netoverlay.gossip.table import GossipTable, newer

entries = st.builds(
    TableEntry,
    owner=st.sampled_from(["a", "b"]),
    key=st.sampled_from(["x", "y", "z"]),
    version=st.integers(0, 4),
    value=st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3), st.binary(max_size=3)),
    tombstone=st.booleans(),
)


def merged(items) -> dict:
    table = GossipTable()
    for e in items:
        table.merge(e, 0.0)
    return {(e.owner, e.key): e for e in table.entries()}


@given(st.lists(entries, max_size=12), st.randoms())
def test_merge_is_independent_of_order(items, rnd):
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert merged(items) == merged(shuffled)


@given(entries, entries)
def test_merge_is_commutative(a, b):
    assert merged([a, b]) == merged([b, a])


@given(st.lists(entries, max_size=12))
def test_merge_is_idempotent(items):
    assert merged(items + items) == merged(items)
    table = GossipTable()
    for e in items:
        table.merge(e, 0.0)
    assert not any(table.merge(e, 0.0) for e in items)


@given(st.lists(entries, min_size=1, max_size=12))
def test_the_highest_version_wins(items):
    result = merged(items)
    for e in items:
        assert result[(e.owner, e.key)].version >= e.version


def test_out_of_order_news_keeps_the_newest():
    table = GossipTable()
    v2 = TableEntry("a", "x", 2, "new")
    assert table.merge(v2, 0.0)
    assert not table.merge(TableEntry("a", "x", 1, "old"), 0.0)
    assert table.get("a", "x") == v2


def test_a_tombstone_hides_the_value_it_deletes_and_is_forgotten_after_retention():
    table = GossipTable()
    table.merge(TableEntry("a", "x", 1, "v"), 0.0)
    table.merge(TableEntry("a", "x", 2, None, tombstone=True), 10.0)
    assert table.live() == []
    assert not table.merge(TableEntry("a", "x", 1, "v"), 11.0)  # the old value does not return
    table.purge_tombstones(older_than=5.0)
    assert table.get("a", "x") is not None
    table.purge_tombstones(older_than=11.0)
    assert table.get("a", "x") is None


def test_dropping_an_owner_removes_only_its_entries():
    table = GossipTable()
    table.merge(TableEntry("a", "x", 1, 1), 0.0)
    table.merge(TableEntry("a", "y", 2, None, tombstone=True), 0.0)
    table.merge(TableEntry("b", "x", 1, 2), 0.0)
    assert [e.key for e in table.drop_owner("a")] == ["x"]
    assert [(e.owner, e.key) for e in table.entries()] == [("b", "x")]


def test_equal_versions_are_ordered_the_same_way_everywhere():
    a, b = TableEntry("o", "k", 3, "left"), TableEntry("o", "k", 3, "right")
    assert newer(a, b) != newer(b, a)
    assert newer(TableEntry("o", "k", 3, None, tombstone=True), a)
