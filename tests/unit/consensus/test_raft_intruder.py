"""What a peer that is not a voter can still send a voter: any node with a certificate of the
cluster can open a read-only connection to every voter's Raft port (here a read-only replica
of the same cluster). Each test has it send what a node of this release never sends, and
checks that the cluster keeps its leader, its log and its failover."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable

import pytest

from consensus.raft import _TRANSPORT as TRANSPORT
from consensus.raft import RAFT_PORT_DROPS, RaftNode, RaftTuning
from node.devcluster.localcluster import wait_for
from tests.unit.consensus.test_raft_changes import free_port
from tests.unit.node.test_consistency import _register


def _voters(tmp_path, may_read_index: Callable[[], bool] = lambda: True) -> list[RaftNode]:
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    made = [
        RaftNode(
            data_dir=str(tmp_path / f"n{i}"),
            address=a,
            password="t",
            may_read_index=may_read_index,
        )
        for i, a in enumerate(addresses)
    ]
    for node in made:
        node.start("voter", addresses)
    return made


@pytest.fixture
async def at_level_4(tmp_path):
    """Three voters of a cluster whose every node speaks ReadIndex."""
    made = _voters(tmp_path)
    yield made
    for node in made:
        node.stop()


@pytest.fixture
async def below_level_4(tmp_path):
    """Three voters in a cluster whose level reads below ReadIndex's: a node announced a
    lower level in its gossip (any node may), or one has not been heard since a restart."""
    made = _voters(tmp_path, may_read_index=lambda: False)
    yield made
    for node in made:
        node.stop()


@pytest.fixture
async def intruder(tmp_path):
    """A read-only replica to be started once the voters lead (`_join`), stopped before them."""
    made = RaftNode(
        data_dir=str(tmp_path / "intruder"),
        address=f"127.0.0.1:{free_port()}",
        password="t",
        tuning=RaftTuning(durable=False),  # its transport sends anything as it is
    )
    yield made
    made.stop()


async def _leader(voters: list[RaftNode]) -> RaftNode:
    async def found() -> RaftNode | None:
        return next((n for n in voters if n.is_leader() and n.status().leader), None)

    leader = await wait_for(found, timeout=20, what="a leader")
    await asyncio.sleep(0.3)  # the others follow it
    return leader


async def _join(intruder: RaftNode, voters: list[RaftNode]) -> RaftNode:
    intruder.start("member", [n.address for n in voters])
    await asyncio.wait_for(intruder.wait_caught_up(), 15)
    await asyncio.sleep(0.3)
    return intruder


def _send_all(intruder: RaftNode, message: dict) -> None:
    transport = getattr(intruder._syncobj, TRANSPORT)
    for node in intruder._syncobj.otherNodes:
        transport.send(node, message)


def _command(call: object, kind: int = 0) -> bytes:
    """A command as pysyncobj encodes it: its type, then the pickled call."""
    return bytes([kind]) + pickle.dumps(call, 2)


async def test_a_non_voter_cannot_write_while_the_cluster_level_reads_low(below_level_4, intruder):
    """Below level 4 a forwarded read barrier is let through (a read-only replica of the
    release before sends one); nothing else may be: an `apply` of any command, a method
    no replica has (pysyncobj halts every replica on it, from the journal again after a
    restart), a membership change that would make the intruder a voter."""
    voters = below_level_4
    leader = await _leader(voters)
    await _join(intruder, voters)
    commit = leader.status().commit_index
    applied = leader.applied()
    dropped = RAFT_PORT_DROPS.not_a_voter
    for command in (
        _command((0, (b"junk",))),  # apply
        _command(99),  # no such method
        _command(("add", intruder.address), kind=2),  # membership
    ):
        _send_all(intruder, {"type": "apply_command", "command": command})
    await asyncio.sleep(1.0)
    assert leader.status().commit_index == commit, "the intruder's command was written"
    assert RAFT_PORT_DROPS.not_a_voter - dropped >= 3
    await _register(leader, 1)  # the cluster still commits and applies
    assert leader.applied() == applied + 1
    assert intruder.address not in leader.status().partners
    # The barrier the release before forwards still commits (it changes nothing).
    assert await asyncio.wait_for(intruder.read_index(timeout=5), 6) == applied + 1


async def test_a_non_voters_malformed_answer_does_not_stop_the_leaders_heartbeats(
    at_level_4, intruder
):
    """A read-only replica answers the leader's entries with `next_node_idx`; one that is
    not a whole number made every later tick of the leader raise before its heartbeats
    went out, and the others deposed it, again and again."""
    voters = at_level_4
    leader = await _leader(voters)
    await _join(intruder, voters)
    term = leader.status().term
    for _ in range(5):
        _send_all(
            intruder,
            {"type": "next_node_idx", "next_node_idx": 1.5, "reset": True, "success": False},
        )
        _send_all(intruder, {"no": "type"})
        _send_all(intruder, ["not", "a", "message"])
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    assert leader.is_leader() and leader.status().term == term, "the leader was deposed"
    await asyncio.wait_for(_register(leader, 1), 3)


async def test_a_non_voters_pre_votes_do_not_hold_back_an_election(at_level_4, intruder):
    """A voter that says yes to a pre-vote puts its own election off by a timeout; a
    non-voter asking every 50 ms (any term, any log) held every voter back for good once
    the leader was gone: no leader, ever, while it kept asking."""
    voters = at_level_4
    leader = await _leader(voters)
    await _join(intruder, voters)
    term = leader.status().term
    survivors = [n for n in voters if n is not leader]
    leader.stop()
    asking = True

    async def ask() -> None:
        while asking:
            _send_all(
                intruder,
                {
                    "type": "shoal_pre_vote",
                    "term": 10**9,
                    "last_log_index": 10**9,
                    "last_log_term": 10**9,
                },
            )
            await asyncio.sleep(0.05)

    spam = asyncio.ensure_future(ask())
    try:

        async def successor() -> RaftNode | None:
            return next((n for n in survivors if n.is_leader()), None)

        await wait_for(successor, timeout=5, what="a new leader")
    finally:
        asking = False
        await spam
    assert all(n.status().term > term for n in survivors)
