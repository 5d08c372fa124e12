"""Protocol levels: the cluster's is the lowest any node announced, a node refuses a cluster
it cannot read, and the leader batches proposals only once every node can apply a batch."""

from __future__ import annotations

import asyncio

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus import codec, protocol
from consensus.raft import RaftNode
from node.devcluster.localcluster import wait_for
from node.join import IncompatibleCluster, check_level
from tests.unit.consensus.test_proposals import _register
from tests.unit.consensus.test_raft_changes import free_port

WRITES = 40


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
    # A level counted with nodes not heard from is a lower bound: it may not refuse as older.
    assert protocol.refusal(1, own=3, exact=False) is None
    assert protocol.refusal(3, own=2, exact=False) is not None


def test_a_node_checks_the_level_another_node_reports_before_it_joins_or_starts():
    check_level(protocol.PROTOCOL, True, "n1")
    check_level(protocol.PROTOCOL - 1, True, "a leader one release back")
    assert protocol.announced(None) == protocol.LOWEST  # a release before levels
    with pytest.raises(IncompatibleCluster, match="more than one level older"):
        check_level(None, True, "a leader of a release before levels")  # speaks the lowest
    with pytest.raises(IncompatibleCluster, match="^leader n1: this node speaks protocol level"):
        check_level(protocol.PROTOCOL + 1, True, "leader n1")
    with pytest.raises(IncompatibleCluster):
        check_level(protocol.PROTOCOL + 1, False, "leader n1")


async def test_the_leader_batches_only_once_every_node_speaks_the_level_that_added_batch(
    tmp_path,
):
    # A synthetic node of the level before `batch`: announced levels as gossip carries them.
    announced = {"self": protocol.PROTOCOL, "old": protocol.BATCH - 1}

    def may_batch() -> bool:
        return protocol.minimum(announced, announced) >= protocol.BATCH

    address = f"127.0.0.1:{free_port()}"
    node = RaftNode(data_dir=str(tmp_path), address=address, password="t", may_batch=may_batch)
    node.start("voter", [address])
    try:

        async def leads() -> bool:
            return node.is_leader() and node._committed_in_term()

        await wait_for(leads, timeout=10, what="a leader")

        async def burst(first: int) -> int:
            """Concurrent writes; how many log entries they took."""
            before = node.status().commit_index
            commands = [codec.encode(_register(i)) for i in range(first, first + WRITES)]
            results = await asyncio.gather(*(node.propose_bytes(c) for c in commands))
            assert all(r.ok for r in results)
            return node.status().commit_index - before

        assert await burst(0) == WRITES
        assert node.batched_entries == 0
        announced["old"] = protocol.BATCH
        assert await burst(WRITES) < WRITES
        assert node.batched_entries > 0
    finally:
        node.stop()
