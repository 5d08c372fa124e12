"""pysyncobj's journal and dump, read and written offline by consensus.raft_files, against
files pysyncobj itself wrote and a replica pysyncobj itself starts: the state a voter's files
hold (dump, then journal) is rebuilt exactly; a dump written for a new cluster starts a
single voter that holds the state, takes writes and hands it to a replica that joins; damage
is reported naming the file instead of read as an empty state."""

from __future__ import annotations

import asyncio
import os

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus import raft_files
from consensus.model import Node
from consensus.nodes import RegisterNode, nodes
from consensus.raft import RaftNode, RaftTuning
from node.devcluster.localcluster import wait_for
from tests.unit.consensus.test_raft_changes import free_port
from tests.unit.consensus.test_raft_snapshot import _compacted_voter, _leads


def _node(i: int) -> Node:
    return Node(f"n{i}", f"n{i}", f"127.0.0.{i + 1}", 7420, 7421, 7422)


async def test_replay_rebuilds_what_a_compacted_voter_holds(tmp_path):
    raft, _tuning = await _compacted_voter(tmp_path)
    try:
        for i in range(120, 130):  # after the dump: in the journal only
            assert (await raft.propose(RegisterNode(_node(i)))).ok
        with raft.view() as state:
            expected = state.detached().to_plain()
    finally:
        raft.stop()
    replayed = raft_files.replay(str(tmp_path / "leader" / "raft"), "voter")
    assert replayed.to_plain()["tables"] == expected["tables"]
    assert replayed.applied == expected["applied"]


async def test_a_written_dump_starts_a_single_voter_that_others_join(tmp_path):
    raft, _tuning = await _compacted_voter(tmp_path, writes=50)
    try:
        with raft.view() as state:
            payload, applied = state.detached().to_msgpack(), state.applied
    finally:
        raft.stop()
    fresh = tmp_path / "fresh" / "raft"
    os.makedirs(fresh)
    address = f"127.0.0.1:{free_port()}"
    raft_files.write_dump(raft_files.dump_path(str(fresh), "voter"), payload, address)
    voter = RaftNode(data_dir=str(tmp_path / "fresh"), address=address, password="test")
    voter.start("voter", [])
    member = RaftNode(
        data_dir=str(tmp_path / "member"),
        address=f"127.0.0.1:{free_port()}",
        password="test",
        tuning=RaftTuning(),
    )
    try:
        await wait_for(lambda: _leads(voter), timeout=20, what="the restored voter to lead")
        assert (await voter.propose(RegisterNode(_node(999)))).ok
        with voter.view() as state:
            assert len(nodes(state)) == 51 and state.applied == applied + 1
        member.start("member", [address])

        async def member_has_it() -> bool:
            with member.view() as state:
                return len(nodes(state)) == 51

        await wait_for(member_has_it, timeout=20, what="a new member to receive the state")
    finally:
        member.stop()
        voter.stop()


async def test_damage_is_reported_with_the_file(tmp_path):
    raft, _tuning = await _compacted_voter(tmp_path, writes=50)
    raft.stop()
    raft_dir = str(tmp_path / "leader" / "raft")
    journal = raft_files.journal_path(raft_dir, "voter")
    assert raft_files.read_journal(journal)
    with open(journal, "r+b") as f:  # a record's size field overwritten
        f.seek(40)
        f.write(b"\xff\xff\x00\x00")
    with pytest.raises(raft_files.RaftFileError, match="voter.journal: record at byte 40"):
        raft_files.replay(raft_dir, "voter")
    dump = raft_files.dump_path(raft_dir, "voter")
    with open(dump, "r+b") as f:
        f.seek(30)
        f.write(b"garbage!")
    with pytest.raises(raft_files.RaftFileError, match="voter.dump: not a readable Raft snapshot"):
        raft_files.read_dump(dump)
    with open(journal, "wb") as f:
        f.write(b"not a journal at all")
    with pytest.raises(raft_files.RaftFileError, match="not a Raft journal"):
        raft_files.read_journal(journal)


async def test_replay_holds_every_write_of_a_batched_entry(tmp_path):
    """Proposals that arrive together are one `batch` entry: an offline replay (as
    --force-new-cluster makes) holds each of them, not only lone `apply` entries."""
    raft = RaftNode(data_dir=str(tmp_path), address=f"127.0.0.1:{free_port()}", password="t")
    raft.start("voter", [])
    try:
        await wait_for(lambda: _leads(raft), timeout=20, what="a leader")
        await asyncio.gather(*(raft.propose(RegisterNode(_node(i))) for i in range(20)))
        assert raft.batched_entries > 0, "no proposals were batched"
        with raft.view() as state:
            written = sorted(nodes(state))
    finally:
        raft.stop()
    replayed = raft_files.replay(str(tmp_path / "raft"), "voter")
    assert sorted(nodes(replayed)) == written


def test_apply_is_method_zero_of_the_replica():
    """replay reads `apply` calls by pysyncobj's number for the method."""
    from pysyncobj import SyncObj, SyncObjConf

    from consensus.raft import _Replica

    replica = _Replica(lambda: None)
    syncobj = SyncObj(
        f"127.0.0.1:{free_port()}", [], SyncObjConf(autoTick=False), consumers=[replica]
    )
    try:
        assert syncobj._methodToID[(id(replica), "apply_v0")] == raft_files.APPLY_METHOD_ID
        assert syncobj._methodToID[(id(replica), "batch_v0")] == raft_files.BATCH_METHOD_ID
    finally:
        syncobj.destroy()
