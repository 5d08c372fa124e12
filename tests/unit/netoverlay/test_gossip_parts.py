"""The suspicion timer and the broadcast queue (memberlist suspicion.go and queue.go)."""

from __future__ import annotations

import math

import pytest

from netoverlay.gossip import codec
from netoverlay.gossip.broadcasts import BroadcastQueue
from netoverlay.gossip.config import GossipConfig
from netoverlay.gossip.model import Alive, Dead, Suspect, TableEntry
from netoverlay.gossip.suspicion import Suspicion, suspicion_timeout


def test_suspicion_shrinks_from_max_to_min_with_confirmations():
    low, high, k = 2.0, 10.0, 3
    timeouts = [suspicion_timeout(c, k, low, high) for c in range(5)]
    assert timeouts[0] == high and timeouts[3] == low and timeouts[4] == low
    assert timeouts[1] == pytest.approx(high - math.log(2) / math.log(4) * (high - low))
    assert timeouts == sorted(timeouts, reverse=True)


def test_a_suspicion_counts_each_accuser_once_and_at_most_k():
    s = Suspicion(incarnation=1, started=100.0, expected=2, low=1.0, high=3.0, accusers={"a"})
    assert s.deadline == 103.0
    assert s.confirm("b") and not s.confirm("b") and not s.confirm("a")
    assert s.confirm("c") and not s.confirm("d")  # k reached
    assert s.deadline == 101.0


def test_suspicion_bounds_grow_with_the_log_of_the_cluster():
    config = GossipConfig()
    low_small, high_small = config.suspicion_bounds(10)
    low_big, high_big = config.suspicion_bounds(1000)
    assert low_small >= config.probe_interval and low_big > low_small
    assert high_big == pytest.approx(low_big * config.suspicion_max_timeout_mult)


def test_retransmit_limit_follows_log10_of_members():
    config = GossipConfig(retransmit_mult=4)
    assert [config.retransmit_limit(n) for n in (1, 9, 10, 99, 100, 1000)] == [4, 4, 8, 8, 12, 16]


def test_least_sent_first_newest_among_equals_and_limited_retransmits():
    q = BroadcastQueue()
    q.push(Alive("a", 1, ("h", 1)))
    q.push(Alive("b", 1, ("h", 1)))
    assert [n.node_id for n in q.take(1000, 2)] == ["b", "a"]
    q.push(Alive("c", 1, ("h", 1)))
    assert [n.node_id for n in q.take(1000, 2)] == ["c", "b", "a"]
    assert [n.node_id for n in q.take(1000, 2)] == ["c"]
    assert len(q) == 0


def test_newer_news_about_the_same_subject_replaces_older():
    q = BroadcastQueue()
    q.push(Suspect("a", 1, "x"))
    q.push(Dead("a", 1, "x"))
    q.push(TableEntry("a", "k", 1, "v1"))
    q.push(TableEntry("a", "k", 2, "v2"))
    assert sorted(map(repr, q.take(1000, 5))) == sorted(
        map(repr, [Dead("a", 1, "x"), TableEntry("a", "k", 2, "v2")])
    )


def test_take_fits_the_byte_budget():
    q = BroadcastQueue()
    for i in range(100):
        q.push(TableEntry("owner", f"key-{i}", 1, "x" * 40))
    taken = q.take(1000, 3)
    assert 0 < len(taken) < 100
    assert sum(codec.news_size(n) for n in taken) <= 1000
    assert len(q) == 100  # none reached its limit yet
