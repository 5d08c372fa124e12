"""Log compaction: the snapshot is the msgpack of the state, made in pysyncobj's forked
child rather than on the Raft thread, and a node restarted from its dump serves nothing
until it has every write again."""

from __future__ import annotations

import asyncio
import os

import pysyncobj.pickle as pysyncobj_pickle

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import Node
from consensus.nodes import RegisterNode, nodes
from consensus.raft import RaftNode, RaftTuning, _Replica
from consensus.state import ClusterState
from node.devcluster.localcluster import wait_for
from tests.unit.consensus.test_raft_changes import free_port


def test_the_snapshot_is_encoded_only_when_pickled(monkeypatch):
    replica = _Replica(lambda: None)
    encoded = []
    real = ClusterState.to_msgpack
    monkeypatch.setattr(ClusterState, "to_msgpack", lambda self: encoded.append(1) or real(self))
    data = replica._serialize()
    assert encoded == []  # nothing done on the Raft thread yet
    restored = pysyncobj_pickle.loads(pysyncobj_pickle.dumps(data))
    assert encoded == [1] and restored["state"] == real(replica.state)


async def test_a_node_restarted_after_compaction_has_every_write(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    tuning = RaftTuning(compaction_min_entries=40, compaction_min_time=0.5)
    raft = RaftNode(data_dir=str(tmp_path), address=address, password="test", tuning=tuning)
    raft.start("voter", [])
    dump = os.path.join(tmp_path, "raft", "voter.dump")
    try:
        await wait_for(lambda: _leads(raft), timeout=20, what="a leader")
        for i in range(120):
            node = Node(f"n{i}", f"n{i}", f"127.0.0.{i + 1}", 7420, 7421, 7422)
            assert (await raft.propose(RegisterNode(node))).ok

        async def dumped() -> bool:
            return os.path.exists(dump)

        await wait_for(dumped, timeout=30, what="a compaction dump")
    finally:
        raft.stop()
    restarted = RaftNode(data_dir=str(tmp_path), address=address, password="test", tuning=tuning)
    restarted.start("voter", [])
    try:
        # Served only once every write is back: the dump, then the journal after it.
        await asyncio.wait_for(restarted.wait_caught_up(), 30)
        with restarted.view() as state:
            assert sorted(nodes(state)) == sorted(f"n{i}" for i in range(120))
    finally:
        restarted.stop()


async def _leads(raft: RaftNode) -> bool:
    await asyncio.sleep(0)
    return raft.is_leader()


async def _compacted_voter(tmp_path, writes: int = 120) -> tuple[RaftNode, RaftTuning]:
    """A single voter that has compacted its log: its first entries exist only in its dump."""
    tuning = RaftTuning(compaction_min_entries=40, compaction_min_time=0.5)
    raft = RaftNode(
        data_dir=str(tmp_path / "leader"),
        address=f"127.0.0.1:{free_port()}",
        password="test",
        tuning=tuning,
    )
    raft.start("voter", [])
    await wait_for(lambda: _leads(raft), timeout=20, what="a leader")
    for i in range(writes):
        node = Node(f"n{i}", f"n{i}", f"127.0.0.{i + 1}", 7420, 7421, 7422)
        assert (await raft.propose(RegisterNode(node))).ok

    async def dumped() -> bool:
        return os.path.exists(os.path.join(tmp_path, "leader", "raft", "voter.dump"))

    await wait_for(dumped, timeout=30, what="a compaction dump")
    return raft, tuning


async def test_a_member_starting_after_compaction_gets_the_state_by_snapshot(tmp_path):
    leader, tuning = await _compacted_voter(tmp_path)
    member = RaftNode(
        data_dir=str(tmp_path / "member"), address="127.0.0.1:1", password="test", tuning=tuning
    )
    try:
        member.start("member", [leader.address])
        assert not member.progress().caught_up
        await asyncio.wait_for(member.wait_caught_up(), 15)
        with member.view() as state:
            assert len(nodes(state)) == 120
        progress = member.progress()
        assert progress.caught_up and progress.behind == 0
    finally:
        member.stop()
        leader.stop()


def _joiner(tmp_path, tuning: RaftTuning) -> RaftNode:
    """A node, not started, to be added as a voter to `_compacted_voter`'s cluster."""
    return RaftNode(
        data_dir=str(tmp_path / "joiner"),
        address=f"127.0.0.1:{free_port()}",
        password="test",
        tuning=tuning,
    )


async def test_a_voter_added_after_compaction_gets_the_state_and_votes(tmp_path):
    leader, tuning = await _compacted_voter(tmp_path)
    joiner = _joiner(tmp_path, tuning)
    try:
        adding = asyncio.ensure_future(leader.add_voter(joiner.address, timeout=15))
        joiner.start("voter", [leader.address])
        await adding
        await asyncio.wait_for(joiner.wait_caught_up(), 15)
        with joiner.view() as state:
            assert len(nodes(state)) == 120
        # It votes: with two voters, a write commits only with its acknowledgement.
        extra = Node("late", "late", "127.0.1.1", 7420, 7421, 7422)
        assert (await leader.propose(RegisterNode(extra))).ok
        await wait_for(lambda: _has(joiner, "late"), timeout=10, what="the write on the joiner")
    finally:
        joiner.stop()
        leader.stop()


async def _has(raft: RaftNode, node_id: str) -> bool:
    await asyncio.sleep(0)
    with raft.view() as state:
        return node_id in nodes(state)
