"""The values the gossip layer deals in: members, table entries, news, messages, events.

All frozen and slotted. News items are what gets piggy-backed (disseminated); messages are
what one node sends to another; events are what the core tells its owner about changes.
Addresses are `(host, port)` tuples: the gossip address of a node (UDP and TCP share it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias

Address = tuple[str, int]


class MemberState(StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class Member:
    """What one node believes about another (or itself). `since` is in the core's clock."""

    node_id: str
    address: Address
    incarnation: int = 0
    state: MemberState = MemberState.ALIVE
    meta: dict[str, Any] = field(default_factory=dict)
    since: float = 0.0

    @property
    def gone(self) -> bool:
        return self.state in (MemberState.DEAD, MemberState.LEFT)


# The public view of a member handed to consumers is the same immutable record.
MemberInfo = Member


@dataclass(frozen=True, slots=True)
class TableEntry:
    """One key of the disseminated table, written only by its owner.

    `version` grows with every write by the owner; a delete is an entry too (a tombstone),
    so that it wins over the value it removes wherever the two meet.
    """

    owner: str
    key: str
    version: int
    value: Any = None
    tombstone: bool = False


# --- news: piggy-backed on packets, retransmitted a bounded number of times ---------------


@dataclass(frozen=True, slots=True)
class Alive:
    node_id: str
    incarnation: int
    address: Address
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Suspect:
    node_id: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class Dead:
    node_id: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class Left:
    node_id: str
    incarnation: int


News: TypeAlias = Alive | Suspect | Dead | Left | TableEntry


def news_subject(news: News) -> tuple[str, ...]:
    """Newer news about the same subject replaces older news in the broadcast queue."""
    if isinstance(news, TableEntry):
        return ("t", news.owner, news.key)
    return ("m", news.node_id)


# --- messages ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    target: str  # the node id the sender expects at this address
    news: tuple[News, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    news: tuple[News, ...] = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to probe `target` at `address` and relay the ack to us under `seq`."""

    seq: int
    target: str
    address: Address
    news: tuple[News, ...] = ()


@dataclass(frozen=True, slots=True)
class Gossip:
    news: tuple[News, ...]


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Push-pull anti-entropy: the full state of `sender`, sent over a stream (TCP)."""

    sender: str
    join: bool
    members: tuple[Member, ...]
    entries: tuple[TableEntry, ...]


@dataclass(frozen=True, slots=True)
class SyncResponse:
    sender: str
    members: tuple[Member, ...]
    entries: tuple[TableEntry, ...]


Packet: TypeAlias = Ping | Ack | PingReq | Gossip
Message: TypeAlias = Ping | Ack | PingReq | Gossip | SyncRequest | SyncResponse


@dataclass(frozen=True, slots=True)
class Outbound:
    """A message for the adapter to send. Sync messages go over a stream, the rest as datagrams."""

    to: Address
    message: Message

    @property
    def is_stream(self) -> bool:
        return isinstance(self.message, (SyncRequest, SyncResponse))


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """A member appeared or changed state, address or meta. `previous` is None for a new one."""

    member: Member
    previous: MemberState | None


@dataclass(frozen=True, slots=True)
class TableEvent:
    """A table key changed: `entry` is None when the key is gone (deleted or owner dead)."""

    owner: str
    key: str
    entry: TableEntry | None


Event: TypeAlias = MemberEvent | TableEvent
