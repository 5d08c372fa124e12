"""ReadIndex on pysyncobj's thread: carries consensus.read_index's messages between voters and
answers the readers of this node.

A reader (on the event loop) calls `request(settle)`; `settle(entry)` is later called on
pysyncobj's thread with the log index the read must wait for, or None when no leader could
confirm it (the reader asks again once leadership moved). On the leader the read waits for a
quorum (consensus.read_index); on a follower it is sent to the leader it follows, and the
answer comes back as a message. Everything else runs from `on_tick` and `on_message`, on
pysyncobj's thread, which alone sends on its transport.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consensus import read_index as core
from consensus.peer_message import PeerMessage

# Called with the log index a read must wait for, or None.
Settle = Callable[[int | None], None]

# A follower's read the leader has not answered within this long is given up (the leader
# died or lost its term before answering); its reader asks again.
_OUTSTANDING_FOR = 10.0
# Reads a leader holds unconfirmed at most: each node has one in flight at a time, so only a
# misbehaving peer comes near this.
_MAX_PENDING = 10_000


@dataclass(frozen=True, slots=True)
class RaftHooks:
    """What ReadRounds needs of a pysyncobj replica beyond its public fields (consensus.raft
    keeps every private name): `send(node, message)` on its transport, `notify()` to wake
    its poller, `is_leader()`, `leader()` (the node it follows, or None), and
    `committed_in_term()`: whether the leader has committed an entry of its current term
    (until then its commit index may miss earlier terms' commits)."""

    send: Callable[[Any, PeerMessage], None]
    notify: Callable[[], None]
    is_leader: Callable[[], bool]
    leader: Callable[[], Any]
    committed_in_term: Callable[[], bool]


class ReadRounds:
    """`syncobj` is the pysyncobj replica, read through its public fields and `hooks`."""

    def __init__(self, syncobj: Any, hooks: RaftHooks) -> None:
        self._so = syncobj
        self._send = hooks.send
        self._notify = hooks.notify
        self._is_leader = hooks.is_leader
        self._leader = hooks.leader
        self._committed_in_term = hooks.committed_in_term
        self._inbox: collections.deque[Settle] = collections.deque()
        self._confirmer: core.ReadConfirmer | None = None
        self._leader_term = -1  # the term `_confirmer` confirms reads in
        self._last_round = 0  # the last ping round this replica sent, in any term
        self._seen_term = -1  # the term of the last tick, for this follower's own reads
        # This leader's readers by number; the followers whose reads it holds, by node id.
        self._local: dict[int, Settle] = {}
        self._readers: dict[str, Any] = {}
        # Confirmed reads waiting for the leader's first commit in its term.
        self._confirmed: list[core.PendingRead] = []
        # This follower's reads sent to the leader: number -> (settle, sent at, the leader's
        # id). Only that node's answer settles one: any certified peer can send this node a
        # message, and a forged index would make a read stale.
        self._outstanding: dict[int, tuple[Settle, float, str]] = {}
        # Reads this node's readers asked for (a round each; concurrent readers share one).
        self.asked = 0
        # A read's number is this plus `asked`. The leader may still owe an answer to a read
        # of this node's replica before this one (a role change, a restart), and answers by
        # number: numbers of two replicas must not meet, or the new read would take the
        # older index. From a random point, they do not (2^62 of them).
        self._first_number = random.getrandbits(62)

    # -- the event loop's side ---------------------------------------------------------
    def request(self, settle: Settle) -> None:
        """Ask for a read index (any thread); `settle` is called on pysyncobj's thread."""
        self._inbox.append(settle)
        self._notify()

    # -- pysyncobj's thread --------------------------------------------------------------
    def _voters(self) -> frozenset[str]:
        so = self._so
        return frozenset([so.selfNode.id, *(n.id for n in so.otherNodes)])

    def _leading_confirmer(self) -> core.ReadConfirmer | None:
        """The confirmer of this leader's current term; a new term or a lost leadership
        answers every read held for the old one with None."""
        so = self._so
        term = so.raftCurrentTerm
        leading = self._is_leader() and so.selfNode is not None
        if self._confirmer is not None and (not leading or term != self._leader_term):
            self._answer(self._confirmer.drop() + self._confirmed, None)
            self._confirmed = []
            self._last_round = self._confirmer.sent_round
            self._confirmer = None
        if leading and self._confirmer is None:
            self._confirmer = core.ReadConfirmer(so.selfNode.id, sent_round=self._last_round)
            self._leader_term = term
        return self._confirmer

    def on_tick(self) -> None:
        so = self._so
        now = time.monotonic()
        confirmer = self._leading_confirmer()
        # The leader this follower's reads go to: the one it follows, while connected to it.
        leader = self._leader() if confirmer is None else None
        if leader is not None and not so.isNodeConnected(leader):
            leader = None
        if self._outstanding:
            # The answer of the leader a read was sent to may never come: this node leads now,
            # the term moved on, or that connection closed (the request or the answer may have
            # gone with it; the read is asked again once it is back).
            term_moved = so.raftCurrentTerm != self._seen_term
            asked_of = leader.id if leader is not None else None
            self._give_up_outstanding(
                lambda sent, to: term_moved or to != asked_of or now - sent > _OUTSTANDING_FOR
            )
        self._seen_term = so.raftCurrentTerm
        while self._inbox:
            settle = self._inbox.popleft()
            self.asked += 1
            number = self._first_number + self.asked
            if confirmer is not None:
                self._local[number] = settle
                self._confirm(confirmer.ask(None, number, self._voters()))
                continue
            if leader is None:
                settle(None)
                continue
            self._outstanding[number] = (settle, now, leader.id)
            self._send(leader, {"type": core.REQUEST, "id": number, "term": so.raftCurrentTerm})
        if confirmer is not None:
            round_ = confirmer.wants_round(now)
            if round_ is not None:
                ping = {"type": core.PING, "term": so.raftCurrentTerm, "round": round_}
                for node in so.otherNodes:
                    self._send(node, ping)
        if self._confirmed:
            confirmed, self._confirmed = self._confirmed, []
            self._confirm(confirmed)

    def on_message(self, node: Any, message: PeerMessage) -> bool:
        """Handle one of ReadIndex's messages; False for any other message."""
        kind = message.get("type")
        so = self._so
        if kind == core.PING:
            self._send(
                node, {"type": core.PONG, "term": so.raftCurrentTerm, "round": message.get("round")}
            )
            return True
        if kind == core.PONG:
            confirmer = self._leading_confirmer()
            round_ = message.get("round")
            if (
                confirmer is not None
                and message.get("term") == so.raftCurrentTerm
                and type(round_) is int
            ):
                self._confirm(confirmer.pong(node.id, round_, self._voters()))
            return True
        if kind == core.REQUEST:
            number = message.get("id")
            confirmer = self._leading_confirmer()
            if type(number) is not int:
                return True
            if (
                confirmer is None
                or message.get("term") != so.raftCurrentTerm
                or len(confirmer.pending) >= _MAX_PENDING
            ):
                self._send(node, {"type": core.ANSWER, "id": number, "index": None})
                return True
            self._readers[node.id] = node
            self._confirm(confirmer.ask(node.id, number, self._voters()))
            self._notify()  # a ping round may be wanted: send it on this tick, not the next
            return True
        if kind == core.ANSWER:
            number = message.get("id")
            if type(number) is not int:
                return True
            waiting = self._outstanding.get(number)
            if waiting is not None and waiting[2] == node.id:
                del self._outstanding[number]
                index = message.get("index")
                waiting[0](index if type(index) is int else None)
            return True
        return False

    def _confirm(self, reads: list[core.PendingRead]) -> None:
        """Answer confirmed reads with the commit index, once the leader has committed an
        entry of its term; hold them until then."""
        if not reads:
            return
        if not self._committed_in_term():
            self._confirmed.extend(reads)
            return
        self._answer(reads, self._so.raftCommitIndex)

    def _answer(self, reads: list[core.PendingRead], index: int | None) -> None:
        for read in reads:
            if read.reader is None:
                settle = self._local.pop(read.number, None)
                if settle is not None:
                    settle(index)
                continue
            node = self._readers.get(read.reader)
            if node is not None:
                self._send(node, {"type": core.ANSWER, "id": read.number, "index": index})

    def _give_up_outstanding(self, expired: Callable[[float, str], bool]) -> None:
        """Answer None to this follower's reads that `expired(sent at, the leader's id)`."""
        for number, (settle, sent, leader) in list(self._outstanding.items()):
            if expired(sent, leader):
                del self._outstanding[number]
                settle(None)
