"""What a node knows: members, suspicions, the table, and the news to pass on.

`apply(news, now)` is the whole SWIM/Lifeguard state-transition table (memberlist's
aliveNode / suspectNode / deadNode): incarnation numbers order news about a member, a node
hearing that it is suspected or dead refutes with a higher incarnation, and what changed
our view is queued for re-broadcast. Changes become events for the owner to drain.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from typing import Any, TypedDict, Unpack

import msgpack

from netoverlay.gossip.broadcasts import BroadcastQueue
from netoverlay.gossip.codec import MAX_KEY
from netoverlay.gossip.config import GossipConfig
from netoverlay.gossip.model import (
    Address,
    Alive,
    Dead,
    Event,
    Left,
    Member,
    MemberEvent,
    MemberState,
    News,
    Suspect,
    TableEntry,
    TableEvent,
)
from netoverlay.gossip.suspicion import Suspicion
from netoverlay.gossip.table import GossipTable, newer

ALIVE, SUSPECT, DEAD, LEFT = (
    MemberState.ALIVE,
    MemberState.SUSPECT,
    MemberState.DEAD,
    MemberState.LEFT,
)
# A table value must fit one datagram with room to spare.
MAX_VALUE_BYTES = 1024


class _Moves(TypedDict, total=False):
    """What an Alive may change of a member besides its state and incarnation."""

    address: Address
    meta: dict[str, Any]


class Membership:
    def __init__(
        self, config: GossipConfig, me: Member, rng: random.Random, members: Iterable[Member] = ()
    ) -> None:
        self.config = config
        self.me = me.node_id
        self.rng = rng
        self.members: dict[str, Member] = {m.node_id: m for m in members}
        self.members[me.node_id] = me
        # Probe order: the other members, shuffled once per round (randomized round-robin).
        self.order: list[str] = [n for n in self.members if n != me.node_id]
        rng.shuffle(self.order)
        # Dead or left members: reaped after a while, the dead retried (reconnect).
        self.gone: set[str] = {n for n, m in self.members.items() if m.state in (DEAD, LEFT)}
        self.live = len(self.members) - len(self.gone)
        self.suspicions: dict[str, Suspicion] = {}
        self.queue = BroadcastQueue()
        self.table = GossipTable()
        self.events: list[Event] = []
        self.leaving = False
        self._version = 0

    # --- bookkeeping -----------------------------------------------------------------

    @property
    def local(self) -> Member:
        return self.members[self.me]

    def _install(self, m: Member) -> None:
        self.members[m.node_id] = m
        self.order.insert(self.rng.randint(0, len(self.order)), m.node_id)
        if m.gone:
            self.gone.add(m.node_id)
        else:
            self.live += 1

    def _set(self, m: Member, now: float) -> None:
        prev = self.members.get(m.node_id)
        if prev is None:
            self._install(m)
        else:
            self.members[m.node_id] = m
            if m.gone != prev.gone:
                self.live += -1 if m.gone else 1
                if m.gone:
                    self.gone.add(m.node_id)
                else:
                    self.gone.discard(m.node_id)
        if m.state != SUSPECT:
            self.suspicions.pop(m.node_id, None)
        if m.node_id != self.me:
            self.events.append(MemberEvent(m, prev.state if prev else None))
        if m.gone:
            for e in self.table.drop_owner(m.node_id):
                self.events.append(TableEvent(e.owner, e.key, None))

    def _moved(
        self,
        cur: Member,
        state: MemberState,
        incarnation: int,
        now: float,
        **changes: Unpack[_Moves],
    ) -> Member:
        since = cur.since if cur.state == state else now
        return dataclasses.replace(
            cur, state=state, incarnation=incarnation, since=since, **changes
        )

    def forget(self, node_id: str) -> None:
        """Drop a long-gone member from every structure."""
        m = self.members.pop(node_id)
        self.order.remove(node_id)
        self.gone.discard(node_id)
        if not m.gone:
            self.live -= 1

    # --- news ------------------------------------------------------------------------

    def apply(self, news: News, now: float, rebroadcast: bool = True) -> bool:
        """Apply one piece of news; True if it changed our view (and was queued to pass on)."""
        if isinstance(news, TableEntry):
            changed = self._on_entry(news, now)
        elif isinstance(news, Alive):
            changed = self._on_alive(news, now)
        elif isinstance(news, Suspect):
            changed = self._on_suspect(news, now)
        elif isinstance(news, Dead):
            changed = self._on_dead(news, now)
        else:
            changed = self._on_left(news, now)
        if changed and rebroadcast:
            self.queue.push(news)
        return changed

    def _on_alive(self, a: Alive, now: float) -> bool:
        if a.node_id == self.me:
            if a.incarnation > self.local.incarnation and not self.leaving:
                self.refute(a.incarnation, now)
            return False
        cur = self.members.get(a.node_id)
        if cur is None:
            self._set(Member(a.node_id, a.address, a.incarnation, ALIVE, a.meta, now), now)
            return True
        if a.incarnation <= cur.incarnation:
            return False
        self._set(self._moved(cur, ALIVE, a.incarnation, now, address=a.address, meta=a.meta), now)
        return True

    def _on_suspect(self, s: Suspect, now: float) -> bool:
        cur = self.members.get(s.node_id)
        if cur is None or s.incarnation < cur.incarnation:
            return False
        if s.node_id == self.me:
            if not self.leaving:
                self.refute(s.incarnation, now)
            return False
        if cur.gone:
            return False
        if cur.state == SUSPECT:
            return self.suspicions[s.node_id].confirm(s.accuser)
        k = self.config.suspicion_confirmations
        low, high = self.config.suspicion_bounds(self.live)
        self.suspicions[s.node_id] = Suspicion(
            s.incarnation, now, k if self.live - 2 >= k else 0, low, high, {s.accuser}
        )
        self._set(self._moved(cur, SUSPECT, s.incarnation, now), now)
        return True

    def _on_dead(self, d: Dead, now: float) -> bool:
        cur = self.members.get(d.node_id)
        if cur is None or d.incarnation < cur.incarnation:
            return False
        if d.node_id == self.me:
            if not self.leaving:
                self.refute(d.incarnation, now)
            return False
        if cur.gone:
            return False
        self._set(self._moved(cur, DEAD, d.incarnation, now), now)
        return True

    def _on_left(self, lv: Left, now: float) -> bool:
        cur = self.members.get(lv.node_id)
        if cur is None or lv.incarnation < cur.incarnation or cur.state == LEFT:
            return False
        if lv.node_id == self.me:
            if not self.leaving:
                self.refute(lv.incarnation, now)
            return False
        self._set(self._moved(cur, LEFT, lv.incarnation, now), now)
        return True

    def _on_entry(self, e: TableEntry, now: float) -> bool:
        if e.owner == self.me:
            held = self.table.get(self.me, e.key)
            if newer(e, held):
                # Someone holds a copy of our key that we never wrote in this life (we
                # restarted): re-assert what we have, a tombstone if nothing, above it.
                self._version = max(self._version, e.version)
                value = None if held is None else held.value
                self._publish(e.key, value, held is None or held.tombstone, now)
            return False
        owner = self.members.get(e.owner)
        if owner is not None and owner.gone:
            return False
        if not self.table.merge(e, now):
            return False
        self.events.append(TableEvent(e.owner, e.key, None if e.tombstone else e))
        return True

    def refute(self, incarnation: int, now: float) -> None:
        """We are said to be suspect, dead or older than we are: outbid the rumour, and
        re-announce our entries, which those who believed it have dropped."""
        me = self.local
        self.members[self.me] = dataclasses.replace(
            me, incarnation=max(me.incarnation, incarnation) + 1
        )
        for e in self.table.owned_by(self.me):
            self.queue.push(e)
        # Queued last, so sent first: receivers must see us alive before our entries.
        self.announce()

    def announce(self) -> None:
        me = self.local
        self.queue.push(Alive(me.node_id, me.incarnation, me.address, me.meta))

    # --- local changes ---------------------------------------------------------------

    def set_meta(self, meta: dict[str, Any]) -> None:
        _check_value("meta", meta)
        me = self.local
        self.members[self.me] = dataclasses.replace(
            me, meta=dict(meta), incarnation=me.incarnation + 1
        )
        self.announce()

    def leave(self, now: float) -> Left:
        self.leaving = True
        me = self.local
        self.members[self.me] = dataclasses.replace(
            me, state=LEFT, incarnation=me.incarnation + 1, since=now
        )
        news = Left(self.me, me.incarnation + 1)
        self.queue.push(news)
        return news

    def local_set(self, key: str, value: Any, now: float) -> None:
        if type(key) is not str or not 0 < len(key) <= MAX_KEY:
            raise ValueError(f"key: must be a string of 1..{MAX_KEY} characters, not {key!r:.40}")
        _check_value("value", value)
        self._publish(key, value, False, now)

    def local_delete(self, key: str, now: float) -> None:
        held = self.table.get(self.me, key)
        if held is not None and not held.tombstone:
            self._publish(key, None, True, now)

    def _publish(self, key: str, value: Any, tombstone: bool, now: float) -> None:
        self._version += 1
        entry = TableEntry(self.me, key, self._version, value, tombstone)
        self.table.merge(entry, now)
        self.queue.push(entry)
        self.events.append(TableEvent(self.me, key, None if tombstone else entry))

    # --- push-pull -------------------------------------------------------------------

    def merge_remote(
        self, sender: str, members: tuple[Member, ...], entries: tuple[TableEntry, ...], now: float
    ) -> None:
        """Merge another node's full state. A member the other side thinks dead is only
        suspected here (it may be the other side's problem, memberlist does the same). What
        we learn is passed on when it changes a member we knew, or is about the sender
        (a joiner); a joiner learning the whole cluster does not re-announce all of it."""
        for m in members:
            if m.state == ALIVE:
                news: News = Alive(m.node_id, m.incarnation, m.address, m.meta)
            elif m.state == LEFT:
                news = Left(m.node_id, m.incarnation)
            else:
                news = Suspect(m.node_id, m.incarnation, sender)
            known = m.node_id in self.members or m.node_id == sender
            self.apply(news, now, rebroadcast=known)
        for e in entries:
            self.apply(e, now, rebroadcast=False)

    # --- timers ----------------------------------------------------------------------

    def expire_suspicions(self, now: float) -> None:
        for node_id, s in list(self.suspicions.items()):
            if s.deadline <= now:
                self.apply(Dead(node_id, s.incarnation, self.me), now)

    def reap(self, now: float) -> None:
        for node_id in [
            n for n in self.gone if now - self.members[n].since > self.config.dead_retention
        ]:
            self.forget(node_id)
        self.table.purge_tombstones(now - self.config.tombstone_retention)


def _check_value(field: str, value: Any) -> None:
    try:
        size = len(msgpack.packb(value, use_bin_type=True))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{field}: cannot be encoded ({exc})") from None
    if size > MAX_VALUE_BYTES:
        raise ValueError(f"{field}: {size} bytes encoded, more than {MAX_VALUE_BYTES}")
