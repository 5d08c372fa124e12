"""Only a voter may vote, lead or answer for the leader: pysyncobj takes these messages from
any connection, a read-only one included, and counts every vote it gets. A peer that is not
a voter (here a read-only replica, as any node with a certificate of the cluster can open)
sends a vote request and entries of a far higher term, forged votes and a command: no
voter's term moves, the leader stays, no entry is written, and each message is counted."""

from __future__ import annotations

import asyncio
import pickle

from consensus.raft import _TRANSPORT as TRANSPORT
from consensus.raft import RAFT_PORT_DROPS, RaftNode
from node.devcluster.localcluster import wait_for
from tests.unit.consensus.test_raft_changes import free_port


async def test_a_peer_that_is_not_a_voter_cannot_vote_lead_or_write(three, tmp_path):
    async def found() -> RaftNode | None:
        return next((n for n in three if n.is_leader() and n.status().leader), None)

    leader = await wait_for(found, timeout=20, what="a leader")
    intruder = RaftNode(
        data_dir=str(tmp_path / "intruder"), address=f"127.0.0.1:{free_port()}", password="t"
    )
    intruder.start("member", [n.address for n in three])
    try:
        await asyncio.wait_for(intruder.wait_caught_up(), 15)
        await asyncio.sleep(0.3)
        terms = [n.status().term for n in three]
        commit = leader.status().commit_index
        dropped = RAFT_PORT_DROPS.not_a_voter
        high = max(terms) + 50
        transport = getattr(intruder._syncobj, TRANSPORT)
        messages = [
            {"type": "request_vote", "term": high, "last_log_index": 10**9, "last_log_term": high},
            {"type": "response_vote", "term": high},
            {
                "type": "append_entries",
                "term": high + 1,
                "commit_index": 0,
                "entries": [],
                "prevLogIdx": 0,
                "prevLogTerm": 0,
            },
            {"type": "apply_command", "command": b"\x00" + pickle.dumps((0, (b"x",), {}))},
        ]
        for node in intruder._syncobj.otherNodes:
            for message in messages:
                transport.send(node, message)
        await asyncio.sleep(1.0)
        assert [n.status().term for n in three] == terms, "a voter's term moved"
        assert leader.is_leader() and all(n.status().leader == leader.address for n in three)
        assert leader.status().commit_index == commit, "the intruder's command was written"
        assert RAFT_PORT_DROPS.not_a_voter - dropped >= len(messages) * len(three) - 1
    finally:
        intruder.stop()


async def test_a_voters_second_vote_in_a_term_is_not_counted(three):
    """A candidate counts one vote per voter and term: replaying a vote elects nobody."""

    async def found() -> RaftNode | None:
        return next((n for n in three if n.is_leader() and n.status().leader), None)

    leader = await wait_for(found, timeout=20, what="a leader")
    follower = next(n for n in three if n is not leader)
    dropped = RAFT_PORT_DROPS.not_a_voter
    transport = getattr(follower._syncobj, TRANSPORT)
    target = next(n for n in follower._syncobj.otherNodes if n.id == leader.address)
    term = leader.status().term
    for _ in range(3):  # the leader is no candidate: pysyncobj ignores one it lets through
        transport.send(target, {"type": "response_vote", "term": term})
    await asyncio.sleep(0.5)
    # The first may pass (unless this voter's vote in the election was counted already).
    assert RAFT_PORT_DROPS.not_a_voter - dropped >= 2, "a repeated vote was let through"
    assert leader.is_leader() and leader.status().term == term
