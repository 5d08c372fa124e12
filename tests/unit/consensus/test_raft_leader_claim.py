"""A leader that has just heard of a higher term does not claim to lead it: pysyncobj sets
the new term (and syncs it) before it leaves the leader state, and a status read in between
paired the old leadership with the new term (two leaders of one term, seen from outside)."""

from __future__ import annotations

from consensus.raft import RaftNode
from node.devcluster.localcluster import wait_for
from tests.unit.consensus.test_raft_changes import free_port


async def test_a_leader_whose_term_moved_on_claims_nothing(tmp_path):
    raft = RaftNode(data_dir=str(tmp_path), address=f"127.0.0.1:{free_port()}", password="t")
    raft.start("voter", [])
    try:

        async def leads() -> bool:
            return raft.is_leader()

        await wait_for(leads, timeout=20, what="a leader")
        status = raft.status()
        assert status.is_leader and status.leader == raft.address
        # What pysyncobj does first on a vote request of a higher term.
        so = raft._syncobj
        so._SyncObj__setCurrentTerm(status.term + 1, None)
        torn = raft.status()
        assert torn.term == status.term + 1
        assert not torn.is_leader and torn.leader is None and raft.leader() is None
    finally:
        raft.stop()


async def test_a_leader_whose_election_entry_was_compacted_claims_no_later_term(tmp_path):
    raft = RaftNode(data_dir=str(tmp_path), address=f"127.0.0.1:{free_port()}", password="t")
    raft.start("voter", [])
    try:

        async def leads() -> bool:
            return raft.is_leader() and raft._committed_in_term()

        await wait_for(leads, timeout=20, what="a leader")
        for _ in range(3):  # entries after the election no-op (each refused, but logged)
            await raft.propose_bytes(b"not a command")
        status = raft.status()
        so = raft._syncobj
        journal = so._SyncObj__raftLog
        # What a compaction does: the journal no longer holds the election no-op.
        journal.deleteEntriesTo(len(journal) - 1)
        assert raft.status().is_leader  # still its own term: still the leader
        so._SyncObj__setCurrentTerm(status.term + 1, None)
        torn = raft.status()
        assert not torn.is_leader and torn.leader is None and raft.leader() is None
    finally:
        raft.stop()
