"""The ring of applied commands a voter keeps for its members' feed."""

from __future__ import annotations

import pytest

from consensus.feed_ring import AppliedRing


def _filled(ring: AppliedRing, first: int, last: int) -> AppliedRing:
    for index in range(first, last + 1):
        ring.append(index, b"c%d" % index)
    return ring


def test_entries_after_an_index_come_in_order_up_to_the_limit():
    ring = _filled(AppliedRing(10), 1, 6)
    assert ring.after(2, 3) == [(3, b"c3"), (4, b"c4"), (5, b"c5")]
    assert ring.after(5, 3) == [(6, b"c6")]
    assert ring.after(6, 3) == []
    assert ring.after(9, 3) == []  # a member ahead of this voter waits


def test_an_index_that_fell_out_of_the_ring_asks_for_a_snapshot():
    ring = _filled(AppliedRing(4), 1, 10)
    assert ring.after(5, 10) is None
    assert ring.after(6, 10) == [(7, b"c7"), (8, b"c8"), (9, b"c9"), (10, b"c10")]


def test_the_ring_is_bounded_by_bytes_too():
    ring = AppliedRing(100, max_bytes=10)
    for index in range(1, 6):
        ring.append(index, b"xxxx")
    assert ring.after(2, 10) is None
    assert ring.after(3, 10) == [(4, b"xxxx"), (5, b"xxxx")]


def test_a_restored_snapshot_or_a_gap_starts_the_ring_afresh():
    ring = _filled(AppliedRing(10), 1, 3)
    ring.restart_at(50)
    assert ring.last == 50 and ring.after(3, 10) is None and ring.after(50, 10) == []
    ring.append(51, b"c51")
    assert ring.after(50, 10) == [(51, b"c51")]
    ring.append(60, b"c60")  # not after 51: nothing before it can be served any more
    assert ring.after(51, 10) is None and ring.after(59, 10) == [(60, b"c60")]


def test_a_ring_needs_room():
    with pytest.raises(ValueError):
        AppliedRing(0)
