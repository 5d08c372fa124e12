"""PreVote (Raft thesis §9.6) with leader stickiness (§4.2.3), as a pure core.

pysyncobj has neither: a voter that stops hearing the leader (its link to the leader is cut,
its process was paused) raises its term and calls an election, and every voter that hears
the higher term steps down, so one node with a bad link deposes a healthy leader again and
again while terms climb. With PreVote a voter first asks the others whether they would vote
for it in the next term, changing nothing; it starts a real election (its term goes up)
only when a majority says yes. A voter says yes only when it has not heard from a leader
for the minimum election timeout itself, and when the asker's log is at least as
up to date as its own; a leader never does.

A leader whose process ended (a crash, kill -9, a stop) closes its connections, and every
voter sees its link to the leader go down at once: waiting out an election timeout then
only delays the new leader. A voter whose link to the leader is down asks within a short
random delay (`LINK_DOWN_DELAY` of the minimum timeout, spread so that two voters rarely ask
at once), and a voter whose own link to the leader is down says yes without waiting. A
voter whose link alone dropped (the leader lives, the others still reach it) is still told
no by them, so it cannot depose a leader the others hear. A leader that is paused or cut off
by the network keeps its connections open: that case still takes the election timeout.

This module decides; consensus.raft carries the messages and holds pysyncobj's own election
timer back until `on_tick` says ELECT.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field

from consensus.peer_message import PeerMessage

# How soon, as a share of the minimum election timeout, a voter whose link to the leader went
# down asks for pre-votes: spread over this window so that the first to ask is usually
# granted before another asks.
LINK_DOWN_DELAY = 0.25

REQUEST = "shoal_pre_vote"
RESPONSE = "shoal_pre_vote_response"


class Action(enum.Enum):
    WAIT = "wait"  # keep following; nothing to do
    ASK = "ask"  # send `request()` to every other voter
    ELECT = "elect"  # a majority would vote: let pysyncobj start the election now


@dataclass(frozen=True, slots=True)
class LogPosition:
    term: int  # the node's current term
    last_index: int
    last_term: int


@dataclass
class PreVote:
    election_min: float
    election_max: float
    rng: random.Random = field(default_factory=random.Random)
    heard_leader_at: float = -math.inf
    deadline: float | None = None
    round_term: int | None = None
    granted: set[str] = field(default_factory=set)
    # Its link to the leader it last heard is down (a connection closed, not a silence).
    leader_link_down: bool = False

    def _timeout(self) -> float:
        return self.rng.uniform(self.election_min, self.election_max)

    def heard_leader(self, now: float) -> None:
        self.heard_leader_at = now
        self.deadline = now + self._timeout()
        self.round_term = None
        self.leader_link_down = False

    def leader_link_lost(self, now: float) -> None:
        """Called, on every tick while it lasts, when this voter's connection to the leader
        it follows is down: ask soon instead of after a whole election timeout."""
        if self.leader_link_down:
            return
        self.leader_link_down = True
        soon = now + self.rng.uniform(0.0, LINK_DOWN_DELAY * self.election_min)
        if self.round_term is None and (self.deadline is None or soon < self.deadline):
            self.deadline = soon

    def on_tick(self, now: float, position: LogPosition, voters: int, self_id: str) -> Action:
        """Called often by a voter that is not the leader; `voters` counts it too."""
        if self.deadline is None:
            self.deadline = now + self._timeout()
        if self.round_term is not None and position.term >= self.round_term:
            # The election this round allowed has started (or another term began).
            self.round_term = None
            self.deadline = now + self._timeout()
        if self.round_term is not None and self._majority(voters):
            return Action.ELECT
        if now < self.deadline:
            return Action.WAIT
        self.deadline = now + self._timeout()
        self.round_term = position.term + 1
        self.granted = {self_id}
        return Action.ELECT if self._majority(voters) else Action.ASK

    def request(self, position: LogPosition) -> PeerMessage:
        return {
            "type": REQUEST,
            "term": position.term + 1,
            "last_log_index": position.last_index,
            "last_log_term": position.last_term,
        }

    def grants(self, now: float, request: PeerMessage, mine: LogPosition, is_leader: bool) -> bool:
        """Would this voter vote for the asker in the term it names? A yes also puts this
        voter's own next round off by a new timeout, as a vote resets Raft's election timer:
        otherwise its timer, running out while the asker's election is under way, makes it a
        candidate of the same term, the vote splits and both wait a timeout more."""
        if is_leader:
            return False
        if not self.leader_link_down and now - self.heard_leader_at < self.election_min:
            return False
        if request.get("term", 0) <= mine.term:
            return False
        theirs = (request.get("last_log_term", -1), request.get("last_log_index", -1))
        if theirs < (mine.last_term, mine.last_index):
            return False
        if self.round_term is None:
            self.deadline = now + self._timeout()
        return True

    def on_response(self, response: PeerMessage, sender: str, voters: int) -> bool:
        """Count a yes for the round in progress; True once a majority said yes."""
        if response.get("term") == self.round_term and response.get("granted"):
            self.granted.add(sender)
        return self.round_term is not None and self._majority(voters)

    def _majority(self, voters: int) -> bool:
        return len(self.granted) > voters / 2
