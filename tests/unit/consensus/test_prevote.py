"""PreVote with leader stickiness: a voter that stops hearing the leader does not raise its
term unless a majority would vote for it, so it cannot depose a leader the others hear."""

from __future__ import annotations

import asyncio
import random

import consensus.raft as raft
from consensus.prevote import LINK_DOWN_DELAY, Action, LogPosition, PreVote
from consensus.raft import RaftNode, RaftTuning
from node.devcluster.localcluster import wait_for
from tests.unit.consensus.test_raft_changes import free_port


def _prevote() -> PreVote:
    return PreVote(0.4, 0.8, random.Random(1))


def test_a_voter_asks_before_it_elects_and_elects_only_with_a_majority():
    vote, at = _prevote(), LogPosition(term=5, last_index=10, last_term=5)
    vote.heard_leader(0.0)
    assert vote.on_tick(0.3, at, voters=3, self_id="a") is Action.WAIT
    assert vote.on_tick(1.0, at, voters=3, self_id="a") is Action.ASK
    assert vote.request(at)["term"] == 6
    assert vote.on_tick(1.01, at, voters=3, self_id="a") is Action.WAIT
    assert vote.on_response({"term": 6, "granted": False}, "b", voters=3) is False
    assert vote.on_response({"term": 5, "granted": True}, "b", voters=3) is False  # old round
    assert vote.on_response({"term": 6, "granted": True}, "c", voters=3) is True
    assert vote.on_tick(1.02, at, voters=3, self_id="a") is Action.ELECT
    # Once the election started (term 6), the round is over.
    assert vote.on_tick(1.03, LogPosition(6, 10, 5), voters=3, self_id="a") is Action.WAIT
    # A lone voter needs nobody.
    alone = _prevote()
    assert alone.on_tick(5.0, at, voters=1, self_id="a") is Action.WAIT  # starts its timer
    assert alone.on_tick(6.0, at, voters=1, self_id="a") is Action.ELECT


def test_a_voter_that_hears_a_leader_or_has_a_newer_log_says_no():
    vote, mine = _prevote(), LogPosition(term=5, last_index=10, last_term=5)
    asking = {"term": 6, "last_log_index": 10, "last_log_term": 5}
    vote.heard_leader(10.0)
    assert not vote.grants(10.3, asking, mine, is_leader=False)  # heard the leader lately
    assert vote.grants(10.5, asking, mine, is_leader=False)
    assert not vote.grants(10.5, asking, mine, is_leader=True)  # a leader never grants
    assert not vote.grants(10.5, {**asking, "last_log_index": 9}, mine, is_leader=False)
    assert not vote.grants(10.5, {**asking, "term": 5}, mine, is_leader=False)
    assert vote.grants(10.5, {**asking, "last_log_index": 3, "last_log_term": 6}, mine, False)


def test_a_voter_that_said_yes_waits_a_timeout_before_it_asks_itself():
    """Its own round would make it a candidate of the term the asker is being elected in."""
    vote, mine = _prevote(), LogPosition(term=5, last_index=10, last_term=5)
    asking = {"term": 6, "last_log_index": 10, "last_log_term": 5}
    vote.heard_leader(10.0)  # its timer runs out between 10.4 and 10.8
    assert vote.grants(10.42, asking, mine, is_leader=False)
    assert vote.on_tick(10.81, mine, voters=3, self_id="b") is Action.WAIT  # put off by >= 0.4
    assert vote.on_tick(11.3, mine, voters=3, self_id="b") is Action.ASK  # and by <= 0.8
    # A no puts nothing off.
    refusing = _prevote()
    refusing.heard_leader(10.0)
    assert not refusing.grants(10.42, {**asking, "last_log_index": 9}, mine, is_leader=False)
    assert refusing.on_tick(10.81, mine, voters=3, self_id="b") is Action.ASK


def test_a_voter_whose_link_to_the_leader_went_down_asks_at_once_and_is_granted_by_one_alike():
    """A leader whose process ended closed every connection: no voter waits a timeout."""
    asker, at = _prevote(), LogPosition(term=5, last_index=10, last_term=5)
    asker.heard_leader(10.0)  # its own timer would run out at 10.4 at the earliest
    asker.leader_link_lost(10.05)
    soon = 10.05 + LINK_DOWN_DELAY * asker.election_min
    assert asker.on_tick(soon, at, voters=3, self_id="a") is Action.ASK
    asking = asker.request(at)

    other = _prevote()
    other.heard_leader(10.0)
    assert not other.grants(soon, asking, at, is_leader=False)  # it still hears the leader
    other.leader_link_lost(soon)
    assert other.grants(soon, asking, at, is_leader=False)
    other.heard_leader(soon + 0.01)  # a leader again: the link is up, the silence is short
    assert not other.grants(soon + 0.02, asking, at, is_leader=False)


def _cut(a: RaftNode, b: RaftNode) -> None:
    """Drop every Raft message between `a` and `b`, both ways."""
    for here, there in ((a, b), (b, a)):
        transport = getattr(here._syncobj, raft._TRANSPORT)
        send, receive = transport.send, transport._onMessageReceivedCallback

        def dropping_send(node, message, send=send, there=there.address):
            return None if node.id == there else send(node, message)

        def dropping_receive(node, message, receive=receive, there=there.address):
            if node.id != there:
                receive(node, message)

        transport.send = dropping_send
        transport.setOnMessageReceivedCallback(dropping_receive)


async def test_a_voter_cut_off_from_the_leader_does_not_depose_it(three):
    async def leader() -> RaftNode | None:
        return next((n for n in three if n.is_leader()), None)

    first = await wait_for(leader, timeout=20, what="a leader")
    await asyncio.sleep(1.0)  # every voter has heard it
    term = first.status().term
    cut_off = next(n for n in three if n is not first)
    _cut(first, cut_off)
    await asyncio.sleep(4.0)  # five election timeouts
    assert first.is_leader() and first.status().term == term
    assert cut_off.status().term == term, "the cut-off voter raised its term"


def _tuned_three(tmp_path) -> list[RaftNode]:
    """Three voters whose election timeout (2-3 s) is far longer than the fast path."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    tuning = RaftTuning(election_min=2.0, election_max=3.0)
    made = [
        RaftNode(data_dir=str(tmp_path / f"n{i}"), address=a, password="t", tuning=tuning)
        for i, a in enumerate(addresses)
    ]
    for node in made:
        node.start("voter", addresses)
    return made


async def test_a_leader_that_stopped_is_replaced_before_an_election_timeout(tmp_path):
    """Its connections closed with it: the others elect at once, not 2 s later."""
    three = _tuned_three(tmp_path)
    try:

        async def leader() -> RaftNode | None:
            return next((n for n in three if n.is_leader() and n.status().leader), None)

        first = await wait_for(leader, timeout=20, what="a leader")
        await asyncio.sleep(0.5)  # both others follow it
        term = first.status().term
        first.stop()
        stopped = asyncio.get_running_loop().time()
        survivors = [n for n in three if n is not first]

        async def successor() -> RaftNode | None:
            return next((n for n in survivors if n.is_leader()), None)

        await wait_for(successor, timeout=20, what="a new leader")
        took = asyncio.get_running_loop().time() - stopped
        assert took < 2.0, f"a new leader took {took:.2f} s: the election timeout, not the link"
        assert all(n.status().term > term for n in survivors)
    finally:
        for node in three:
            node.stop()


async def test_a_voter_whose_link_alone_drops_does_not_depose_the_leader(tmp_path):
    """Its connection to the leader is closed again and again, and it hears nothing from it;
    the third voter still hears the leader and says no."""
    three = _tuned_three(tmp_path)
    try:

        async def leader() -> RaftNode | None:
            return next((n for n in three if n.is_leader() and n.status().leader), None)

        first = await wait_for(leader, timeout=20, what="a leader")
        await asyncio.sleep(0.5)
        term = first.status().term
        cut_off = next(n for n in three if n is not first)
        _cut(first, cut_off)
        for _ in range(25):  # 5 s: two election timeouts at least
            for here, there in ((cut_off, first), (first, cut_off)):
                connections = getattr(here._syncobj, raft._TRANSPORT)._connections
                for node, connection in list(connections.items()):
                    if node.id == there.address:
                        connection.disconnect()
            await asyncio.sleep(0.2)
        assert first.is_leader() and first.status().term == term
        assert cut_off.status().term == term, "the voter whose link dropped raised its term"
    finally:
        for node in three:
            node.stop()
