"""ReadIndex (Raft thesis §6.4) on the leader, as a pure core: which reads a quorum has
confirmed, so that the leader may answer them with its commit index.

A linearizable read must see every write acknowledged before it began. The leader's commit
index covers every such write once two things hold: it has committed an entry of its own
term (pysyncobj's no-op), and it still led after the read began, which a majority of voters
shows by answering, in the leader's term, a message sent after the read began. No entry is
written and nothing is fsynced: one round of messages instead of a log round.

Who counts toward that majority, for a read that arrived at time t:
  - the leader itself;
  - a voter that asked for the read: its request, sent in the leader's term after the read
    began, is such an answer, so with three voters a follower's read needs no other round;
  - every voter that answers a ping the leader sent after the read arrived (a `round`).
A voter of another term, or a node that does not vote, counts for nothing.

This module decides; consensus.read_rounds carries the messages on pysyncobj's thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REQUEST = "shoal_read_index"  # a follower -> the leader: {id, term}
ANSWER = "shoal_read_index_answer"  # the leader -> that follower: {id, index | None}
PING = "shoal_read_ping"  # the leader -> every voter: {term, round}
PONG = "shoal_read_pong"  # a voter -> the leader: {term, round}


@dataclass(slots=True)
class PendingRead:
    """A read the leader has not yet confirmed. `reader` names who waits for the answer:
    a follower's node id with its own number for the read, or None for a read on the
    leader itself (with the number its caller gave)."""

    reader: str | None
    number: int
    round: int
    acks: set[str] = field(default_factory=set)


@dataclass
class ReadConfirmer:
    """The leader's pending reads. Each call returns what it confirmed; the caller answers
    those with its commit index (once it has committed an entry of its own term)."""

    self_id: str
    pending: list[PendingRead] = field(default_factory=list)
    # The rounds whose pings went out; a read joins the next round, never one already sent.
    # A pong names only its round, and a voter may answer a ping of this leader's earlier
    # term late, in this one: so the rounds of a new term go on from the last one's number
    # (`sent_round` of the confirmer before), never from 1 again.
    sent_round: int = 0
    sent_at: float = 0.0
    # A pending read's round is pinged again after this long: a pong lost with a dropped
    # connection would otherwise hold it until its reader gives up.
    repeat_after: float = 0.05

    def ask(self, reader: str | None, number: int, voters: frozenset[str]) -> list[PendingRead]:
        """A read arrived: from `reader` (a node id, None for this leader) in the leader's
        term. `voters` are the voters' ids, the leader's own among them. It is confirmed at
        once when the leader and the asker are a majority; otherwise it waits for the pongs
        of the next round (`wants_round`)."""
        read = PendingRead(reader, number, self.sent_round + 1, {self.self_id})
        if reader is not None and reader in voters:
            read.acks.add(reader)
        if _majority(read.acks, voters):
            return [read]
        self.pending.append(read)
        return []

    def wants_round(self, now: float) -> int | None:
        """The round to ping for now, if a pending read waits for one not yet sent, or has
        waited `repeat_after` since the last one went out. A later round counts for every
        read that arrived before it, so a repeat needs no bookkeeping of its own."""
        if not self.pending:
            return None
        unsent = any(read.round > self.sent_round for read in self.pending)
        if unsent or now - self.sent_at >= self.repeat_after:
            self.sent_round += 1
            self.sent_at = now
            return self.sent_round
        return None

    def pong(self, sender: str, round_: int, voters: frozenset[str]) -> list[PendingRead]:
        """A voter answered ping `round_` in the leader's term: it counts for every read
        that arrived before that ping went out."""
        if sender not in voters:
            return []
        confirmed: list[PendingRead] = []
        waiting: list[PendingRead] = []
        for read in self.pending:
            if read.round <= round_:
                read.acks.add(sender)
            (confirmed if _majority(read.acks, voters) else waiting).append(read)
        self.pending = waiting
        return confirmed

    def drop(self) -> list[PendingRead]:
        """Leadership ended (or its term moved on): every pending read is answered with no
        index, and its reader asks again wherever the leader is now."""
        dropped, self.pending = self.pending, []
        return dropped


def _majority(acks: set[str], voters: frozenset[str]) -> bool:
    return len(acks & voters) > len(voters) / 2
