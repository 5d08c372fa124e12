"""A leader that has just heard of a higher term does not claim to lead it: pysyncobj sets
the new term (and syncs it) before it leaves the leader state, and a status read in between
paired the old leadership with the new term (two leaders of one term, seen from outside)."""

from __future__ import annotations

from consensus.raft import RaftNode
from node.localcluster import wait_for
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
