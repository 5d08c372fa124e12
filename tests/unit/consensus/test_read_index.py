"""ReadIndex: a linearizable read is confirmed by a quorum of voters answering in the
leader's term after the read began, and writes no log entry."""

from __future__ import annotations

import asyncio
import threading

import pytest

import consensus.raft as raft
from consensus.raft import NoQuorum, RaftNode
from consensus.read_index import ANSWER, PING, REQUEST, ReadConfirmer
from node.devcluster.localcluster import wait_for
from tests.unit.consensus.test_prevote import _cut
from tests.unit.node.test_consistency import _register

THREE = frozenset({"a", "b", "c"})
FIVE = frozenset({"a", "b", "c", "d", "e"})


def test_with_three_voters_a_followers_request_is_the_confirmation_it_needs():
    confirmer = ReadConfirmer("a")
    confirmed = confirmer.ask("b", 7, THREE)
    assert [(r.reader, r.number) for r in confirmed] == [("b", 7)]
    assert confirmer.wants_round(0.0) is None, "no ping round needed"


def test_a_read_on_the_leader_waits_for_a_pong_of_a_round_sent_after_it():
    confirmer = ReadConfirmer("a")
    assert confirmer.ask(None, 1, THREE) == []
    first = confirmer.wants_round(0.0)
    assert first == 1
    assert confirmer.ask(None, 2, THREE) == []  # arrived after round 1 went out
    done = confirmer.pong("b", first, THREE)
    assert [r.number for r in done] == [1], "round 1's pong says nothing of read 2"
    second = confirmer.wants_round(0.001)
    assert second == 2
    assert [r.number for r in confirmer.pong("c", second, THREE)] == [2]
    assert confirmer.pending == []


def test_only_voters_count_and_five_voters_need_three():
    confirmer = ReadConfirmer("a")
    assert confirmer.ask("b", 1, FIVE) == []  # the leader and the asker: two of five
    assert confirmer.ask("x", 2, FIVE) == []  # not a voter: only the leader counts
    round_ = confirmer.wants_round(0.0)
    assert round_ is not None
    assert confirmer.pong("x", round_, FIVE) == []  # a non-voter's pong counts for nothing
    assert [r.number for r in confirmer.pong("c", round_, FIVE)] == [1]
    assert [r.number for r in confirmer.pong("d", round_, FIVE)] == [2]


def test_a_round_is_pinged_again_while_reads_wait_and_dropped_with_leadership():
    confirmer = ReadConfirmer("a", repeat_after=0.05)
    confirmer.ask(None, 1, THREE)
    assert confirmer.wants_round(10.0) == 1
    assert confirmer.wants_round(10.01) is None  # sent a moment ago
    assert confirmer.wants_round(10.06) == 2  # its pongs may be lost with a connection
    assert [r.number for r in confirmer.drop()] == [1]
    assert confirmer.wants_round(11.0) is None


async def _leader(three: list[RaftNode]) -> RaftNode:
    async def found() -> RaftNode | None:
        return next((n for n in three if n.is_leader() and n.status().leader), None)

    leader = await wait_for(found, timeout=20, what="a leader")
    await asyncio.sleep(0.3)  # both others follow it and have applied its no-op
    return leader


async def test_a_follower_reads_what_the_leader_committed_without_an_entry(three):
    leader = await _leader(three)
    follower = next(n for n in three if n is not leader)
    for i in range(5):
        await _register(leader, i)
        committed = leader.status().commit_index
        asked = follower._read_rounds.asked
        index = await follower.read_index(timeout=5)
        assert index == leader.applied() == i + 1, "the read holds the write before it"
        assert follower.applied() >= index
        assert follower._read_rounds.asked == asked + 1
        assert leader.status().commit_index == committed, "a read writes no entry"


async def test_a_leader_cut_off_from_every_voter_confirms_no_read(three):
    leader = await _leader(three)
    await _register(leader, 1)
    assert await leader.read_index(timeout=5) == 1  # confirmed while it reaches them
    for other in three:
        if other is not leader:
            _cut(leader, other)
    with pytest.raises(NoQuorum):
        await leader.read_index(timeout=1.0)


async def test_only_the_leader_asked_can_answer_a_followers_read(three):
    """Any certified peer can send a node a message: an answer from another node, naming
    any index, settles nothing (a forged index would make the read stale)."""
    leader = await _leader(three)
    follower, other = (n for n in three if n is not leader)
    sent: list[int] = []
    _requests_dropped(leader, follower, sent)  # its request never reaches the leader
    read = asyncio.ensure_future(follower.read_index(timeout=1.5))

    async def asked() -> bool:
        return bool(sent)

    await wait_for(asked, timeout=5, what="the follower's request")
    transport = getattr(other._syncobj, raft._TRANSPORT)
    target = next(n for n in other._syncobj.otherNodes if n.id == follower.address)
    for number in sent:
        transport.send(target, {"type": ANSWER, "id": number, "index": 0})
    with pytest.raises(NoQuorum):
        await read


class _HeldPings:
    """`node` answers no ReadIndex ping: it keeps those that arrive until `drop_new()`, drops
    every later one, and answers the kept ones once `release()` was called, with the next
    message it receives (on the Raft thread, as any message)."""

    def __init__(self, node: RaftNode) -> None:
        transport = getattr(node._syncobj, raft._TRANSPORT)
        self._receive = transport._onMessageReceivedCallback
        self._held: list[tuple[object, dict]] = []
        self._keeping = True
        self._released = threading.Event()
        transport.setOnMessageReceivedCallback(self._holding)

    def drop_new(self) -> None:
        self._keeping = False

    def release(self) -> None:
        self._released.set()

    def _holding(self, peer, message) -> None:
        if self._released.is_set():
            while self._held:
                self._receive(*self._held.pop(0))
        if isinstance(message, dict) and message.get("type") == PING:
            if self._keeping:
                self._held.append((peer, message))
            return
        self._receive(peer, message)


async def test_a_pong_to_a_ping_of_an_earlier_term_confirms_no_read(three):
    """The leader counts a pong for every read that arrived before its ping went out; a new
    term's rounds numbered from 1 again, so a voter answering late a ping the same leader
    sent in an earlier term confirmed a read that began after it answered."""
    leader = await _leader(three)
    late, other = (n for n in three if n is not leader)
    _cut(late, other)  # only the leader can win the next election: each says no to the other
    kept = _HeldPings(late)
    _HeldPings(other).drop_new()  # it answers no ping from here on
    with pytest.raises(NoQuorum):
        await leader.read_index(timeout=0.5)  # its pings are kept by `late`
    term = leader.status().term
    # A vote asked in a higher term with an old log: the leader steps down, and wins the next
    # election (the other two's pre-votes are cut from each other and refused by it).
    transport = getattr(late._syncobj, raft._TRANSPORT)
    target = next(n for n in late._syncobj.otherNodes if n.id == leader.address)
    vote = {"type": "request_vote", "term": term + 1, "last_log_index": 0, "last_log_term": 0}
    transport.send(target, vote)

    async def leads_again() -> bool:
        status = leader.status()
        return status.is_leader and status.term > term + 1 and late.status().term == status.term

    await wait_for(leads_again, timeout=10, what="the same leader in a later term")
    kept.drop_new()  # the pings of the new term go unanswered
    await asyncio.sleep(0.2)  # its election's no-op commits
    read = asyncio.ensure_future(leader.read_index(timeout=1.0))
    await asyncio.sleep(0.2)  # the read's own pings went out
    kept.release()  # `late` answers the pings of the earlier term now, in the new one
    with pytest.raises(NoQuorum):
        await read


async def test_a_followers_read_lost_with_its_connection_is_asked_again(three):
    """The connection to the leader closed with the request (or the answer) on it: the
    follower asks again once it is back, instead of waiting out the read's whole timeout."""
    leader = await _leader(three)
    follower = next(n for n in three if n is not leader)
    transport = getattr(leader._syncobj, raft._TRANSPORT)
    receive = transport._onMessageReceivedCallback
    lost: list[dict] = []

    def losing(peer, message):  # on the leader's Raft thread
        if not lost and isinstance(message, dict) and message.get("type") == REQUEST:
            lost.append(message)
            transport._connections[peer].disconnect()
            return
        receive(peer, message)

    transport.setOnMessageReceivedCallback(losing)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await follower.read_index(timeout=5)
    took = loop.time() - started
    assert lost, "no request was lost"
    assert took < 3.0, f"the read took {took:.1f} s: it waited for an answer that could not come"


def _requests_dropped(leader: RaftNode, sender: RaftNode, sent: list[int]) -> None:
    """`leader` drops the ReadIndex requests `sender` sends it, keeping their numbers."""
    transport = getattr(leader._syncobj, raft._TRANSPORT)
    receive = transport._onMessageReceivedCallback

    def dropping(peer, message):
        if (
            peer.id == sender.address
            and isinstance(message, dict)
            and message.get("type") == REQUEST
        ):
            sent.append(message["id"])
            return
        receive(peer, message)

    transport.setOnMessageReceivedCallback(dropping)


async def test_a_replica_started_again_takes_no_answer_meant_for_the_one_before(three):
    """A node's replica is started again in the same process (a role change) while the
    leader may still hold a read the one before asked: the leader's answer to it, naming the
    index of then, must settle no read of the new replica (their numbers once both began at
    1, and the new read would have been answered with an older index: a stale read)."""
    leader = await _leader(three)
    follower = next(n for n in three if n is not leader)
    sent: list[int] = []
    _requests_dropped(leader, follower, sent)
    with pytest.raises(NoQuorum):
        await follower.read_index(timeout=1.0)
    before = list(sent)
    assert before, "the first replica asked no read"

    follower.start("voter", [n.address for n in three])

    async def following() -> bool:
        return follower.status().leader == leader.address

    await wait_for(following, timeout=10, what="the new replica to follow the leader")
    read = asyncio.ensure_future(follower.read_index(timeout=1.5))

    async def asked() -> bool:
        return len(sent) > len(before)

    await wait_for(asked, timeout=5, what="the new replica's request")
    transport = getattr(leader._syncobj, raft._TRANSPORT)
    target = next(n for n in leader._syncobj.otherNodes if n.id == follower.address)
    for number in before:  # the answers the leader owed the replica before, index 0
        transport.send(target, {"type": ANSWER, "id": number, "index": 0})
    with pytest.raises(NoQuorum):
        await read


async def test_a_read_woken_by_an_apply_finds_the_entry_already_published(three):
    """The Raft thread wakes the loop for each entry it applies; a read waiting for that entry
    looks at `published_entry` as soon as it is woken, which can be before the Raft thread
    runs again. Set after the wake, the read saw the entry before and went back to waiting,
    for a change that an idle cluster never makes (1 in 4 runs of the test above timed out)."""
    leader = await _leader(three)
    follower = next(n for n in three if n is not leader)
    replica = follower._replica
    seen_at_wake: list[tuple[int, int]] = []
    publishing: list[int] = []
    wake, publish = replica._on_change, replica.publish

    def recording_publish(entry: int) -> None:
        publishing.append(entry)
        publish(entry)

    def recording_wake() -> None:
        seen_at_wake.append((replica.published_entry, publishing[-1]))
        wake()

    replica.publish, replica._on_change = recording_publish, recording_wake
    for i in range(3):
        await _register(leader, i)
    await wait_for(lambda: _applied(follower, 3), timeout=10, what="the follower to apply")
    assert seen_at_wake, "the follower woke its loop"
    stale = [(seen, entry) for seen, entry in seen_at_wake if seen < entry]
    assert not stale, f"woken before the entry was published: {stale}"


async def _applied(node: RaftNode, count: int) -> bool:
    return node.applied() >= count
