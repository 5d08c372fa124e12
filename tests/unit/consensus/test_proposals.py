"""Concurrent proposals on the leader share Raft entries, each with its own result."""

from __future__ import annotations

import asyncio

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus import codec
from consensus.model import Node
from consensus.nodes import NODES, RegisterNode
from consensus.proposals import ProposalBatcher
from node.devcluster.localcluster import wait_for

WRITES = 60


class Recorder:
    """A submit that commits nothing: it records each round and answers after a yield."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.rounds: list[list[bytes]] = []
        self.fail = fail

    async def __call__(self, commands: list[bytes], timeout: float) -> list[bytes]:
        self.rounds.append(commands)
        await asyncio.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        return [b"done " + c for c in commands]


async def test_a_lone_proposal_goes_at_once_and_those_arriving_meanwhile_share_the_next():
    submit = Recorder()
    batcher = ProposalBatcher(submit)
    first = asyncio.ensure_future(batcher.propose(b"0", 1.0))
    await asyncio.sleep(0.001)
    assert submit.rounds == [[b"0"]]  # sent alone, without waiting for company
    results = await asyncio.gather(first, *(batcher.propose(b"%d" % i, 1.0) for i in range(1, 5)))
    assert results == [b"done %d" % i for i in range(5)]
    assert submit.rounds == [[b"0"], [b"1", b"2", b"3", b"4"]]
    assert await batcher.propose(b"again", 1.0) == b"done again"


async def test_a_batch_is_bounded_by_count_and_bytes():
    submit = Recorder()
    batcher = ProposalBatcher(submit, max_count=2, max_bytes=10)
    await asyncio.gather(*(batcher.propose(c, 1.0) for c in (b"a", b"b", b"c", b"xxxxxxxxxx")))
    assert submit.rounds == [[b"a", b"b"], [b"c"], [b"xxxxxxxxxx"]]


async def test_every_proposal_of_a_failed_round_learns_why():
    batcher = ProposalBatcher(Recorder(fail=RuntimeError("leader changed")))
    outcomes = await asyncio.gather(
        *(batcher.propose(b"%d" % i, 1.0) for i in range(3)), return_exceptions=True
    )
    assert [str(o) for o in outcomes] == ["leader changed"] * 3


async def test_a_proposal_stuck_behind_a_slow_round_times_out_on_its_own_deadline():
    async def slow(commands: list[bytes], timeout: float) -> list[bytes]:
        await asyncio.sleep(0.5)
        return commands

    batcher = ProposalBatcher(slow)
    first = asyncio.ensure_future(batcher.propose(b"a", 1.0))
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await batcher.propose(b"b", 0.05)
    assert await first == b"a"


def _register(i: int) -> RegisterNode:
    return RegisterNode(
        Node(
            id=f"id{i}",
            name=f"n{i}",
            address="127.0.0.1",
            api_port=10000 + i,
            raft_port=20000 + i,
            gossip_port=30000 + i,
        )
    )


async def test_concurrent_writes_on_a_real_leader_share_entries_and_keep_their_own_results(
    three,
):
    async def found():
        return next((n for n in three if n.is_leader() and n._committed_in_term()), None)

    leader = await wait_for(found, timeout=20, what="a leader")
    before = leader.applied()
    commands = [
        codec.encode(_register(i), f"req{i}") if i % 3 else b"not msgpack" for i in range(WRITES)
    ]
    results = await asyncio.gather(*(leader.propose_bytes(c) for c in commands))
    assert [r.ok for r in results] == [bool(i % 3) for i in range(WRITES)]
    assert all(r.code == 400 for r in results[::3])
    # Applied in the order proposed, each its own command.
    indexes = [(i, r.index) for i, r in enumerate(results) if r.ok]
    assert indexes == [(i, before + i + 1) for i in range(WRITES) if i % 3]
    assert leader._proposals.rounds < WRITES / 2

    async def replicated() -> bool:
        return all(n.applied() == before + WRITES for n in three)

    await wait_for(replicated, timeout=10, what="every node applied the batch")
    follower = next(n for n in three if n is not leader)
    with follower.view() as state:
        assert {f"id{i}" for i in range(WRITES) if i % 3} <= set(state.table(NODES))
