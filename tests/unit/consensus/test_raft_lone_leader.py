"""A one-node cluster commits at once: its leader does not wait out pysyncobj's 50 ms tick."""

from __future__ import annotations

import statistics
import time

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import Node
from consensus.nodes import RegisterNode
from consensus.raft import RaftNode
from node.devcluster.localcluster import wait_for
from tests.unit.consensus.test_raft_changes import free_port

TICK = 0.05


def _record(i: int) -> RegisterNode:
    return RegisterNode(
        Node(
            id="id1",
            name="n1",
            address="127.0.0.1",
            api_port=7420,
            raft_port=7421,
            gossip_port=7422 + i % 2,
        )
    )


async def test_a_lone_leader_writes_and_reads_without_waiting_for_the_tick(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    node = RaftNode(data_dir=str(tmp_path), address=address, password="t")
    node.start("voter", [address])
    try:

        async def leads() -> bool:
            return node.is_leader() and node._committed_in_term()

        await wait_for(leads, timeout=10, what="a leader")
        writes, reads = [], []
        for i in range(20):
            started = time.perf_counter()
            await node.propose(_record(i))
            writes.append(time.perf_counter() - started)
            started = time.perf_counter()
            await node.read_index()
            reads.append(time.perf_counter() - started)
        # Before the wake-up, each one took a whole tick (p50 ≈ 52 ms).
        assert statistics.median(writes) < TICK / 2, writes
        assert statistics.median(reads) < TICK / 2, reads
    finally:
        node.stop()
