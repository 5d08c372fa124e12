"""PreVote with leader stickiness: a voter that stops hearing the leader does not raise its
term unless a majority would vote for it, so it cannot depose a leader the others hear."""

from __future__ import annotations

import asyncio
import random

import consensus.raft as raft
from consensus.prevote import Action, LogPosition, PreVote
from consensus.raft import RaftNode
from node.devcluster.localcluster import wait_for


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
