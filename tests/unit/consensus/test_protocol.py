"""Protocol levels: the cluster's is the lowest any node announced, and a node refuses a
cluster it cannot read."""

from __future__ import annotations

from consensus import protocol


def test_the_cluster_speaks_the_lowest_level_and_a_node_not_heard_from_counts_lowest():
    levels = {"a": 2, "b": 2, "c": 3}
    assert protocol.minimum(["a", "b", "c"], levels) == 2
    assert protocol.minimum(["a", "b", "d"], levels) == protocol.LOWEST
    assert protocol.minimum([], levels, own=3) == 3


def test_an_announcement_that_is_no_level_reads_as_the_lowest():
    assert [protocol.announced(v) for v in (2, None, "2", 0, -1, True, 2.0, 10**9)] == [
        2,
        *[protocol.LOWEST] * 7,
    ]


def test_a_node_refuses_a_cluster_newer_than_itself_or_more_than_one_level_older():
    assert protocol.refusal(2, own=2) is None
    assert protocol.refusal(1, own=2) is None
    newer = protocol.refusal(3, own=2)
    assert newer is not None and "level 2 and the cluster 3" in newer
    older = protocol.refusal(1, own=3)
    assert older is not None and "release in between" in older
