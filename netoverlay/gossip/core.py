"""The SWIM gossip core, sans I/O: feed it time and messages, send what it returns.

    core = GossipCore(config, "n1", ("127.0.0.1", 7422), now=clock(), seed=1)
    out = core.join([seed_address], now)        # sync requests, to send over a stream
    out = core.handle(src, message, now)       # for every message received
    out = core.tick(now)                       # at core.next_deadline() (or earlier)
    events = core.take_events()                # member and table changes

Every probe interval one member, in randomized round-robin order, gets a ping; a missed ack
(probe_timeout) makes `indirect_checks` members ping it for us; no ack by the end of the
interval makes it suspect. News rides on every packet, and every gossip interval goes to a
few random members as well. Push-pull exchanges full state now and then, and on join.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from netoverlay.gossip.config import GossipConfig
from netoverlay.gossip.membership import ALIVE, DEAD, LEFT, Membership
from netoverlay.gossip.model import (
    Ack,
    Address,
    Event,
    Gossip,
    Member,
    Message,
    News,
    Outbound,
    Ping,
    PingReq,
    Suspect,
    SyncRequest,
    SyncResponse,
    TableEntry,
)

# Room left in a datagram for the fixed fields of a message around its news.
_HEADER_BYTES = 24
_SEQ_MASK = 0xFFFFFFFF


@dataclass(slots=True)
class _Probe:
    seq: int
    target: str
    ack_deadline: float
    end: float
    indirect: bool = False


@dataclass(frozen=True, slots=True)
class _Relay:
    origin: Address
    origin_seq: int
    expires: float


class GossipCore:
    def __init__(
        self,
        config: GossipConfig,
        node_id: str,
        address: Address,
        *,
        now: float,
        seed: int | None = None,
        meta: dict[str, Any] | None = None,
        members: Iterable[Member] = (),
    ) -> None:
        """`members` installs a known membership silently (simulation bootstrap)."""
        self.config = config
        self.node_id = node_id
        self._rng = random.Random(seed)
        me = Member(node_id, address, 0, ALIVE, dict(meta or {}), now)
        self._view = Membership(config, me, self._rng, members)
        self._seq = self._rng.getrandbits(16)
        self._probe_index = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        rng = self._rng
        # Staggered starts, so that nodes started together do not probe in lockstep.
        self._next_probe = now + rng.uniform(0, config.probe_interval)
        self._next_gossip = now + rng.uniform(0, config.gossip_interval)
        self._next_push_pull = now + rng.uniform(0, config.push_pull_period(self._view.live))
        self._next_reconnect = now + rng.uniform(0, config.reconnect_interval)

    # --- queries -----------------------------------------------------------------------

    @property
    def local(self) -> Member:
        return self._view.local

    def member(self, node_id: str) -> Member | None:
        return self._view.members.get(node_id)

    def members(self) -> list[Member]:
        return list(self._view.members.values())

    def table_items(self) -> list[TableEntry]:
        return self._view.table.live()

    def table_get(self, owner: str, key: str) -> TableEntry | None:
        entry = self._view.table.get(owner, key)
        return None if entry is None or entry.tombstone else entry

    @property
    def pending_broadcasts(self) -> int:
        return len(self._view.queue)

    def take_events(self) -> list[Event]:
        events, self._view.events = self._view.events, []
        return events

    def next_deadline(self) -> float:
        """When tick() has something to do next; it may be called earlier, harmlessly."""
        due = min(self._next_probe, self._next_push_pull, self._next_reconnect)
        if self._probe is not None:
            due = min(due, self._probe.end if self._probe.indirect else self._probe.ack_deadline)
        if len(self._view.queue):
            due = min(due, self._next_gossip)
        for s in self._view.suspicions.values():
            due = min(due, s.deadline)
        return due

    # --- local actions -----------------------------------------------------------------

    def join(self, seeds: Iterable[Address], now: float) -> list[Outbound]:
        """Full-state exchange with each seed; send the results over streams."""
        request = self._sync_request(join=True)
        return [Outbound(addr, request) for addr in seeds]

    def leave(self, now: float) -> list[Outbound]:
        """Announce a graceful leave to a few members at once; gossip carries it further.
        The node stops probing; keep ticking a few gossip intervals so the news spreads."""
        self._view.leave(now)
        self._probe = None
        targets = self._random_members(2 * self.config.gossip_nodes, self._gossip_target(now))
        return self._gossip_to(targets)

    def local_set(self, key: str, value: Any, now: float) -> None:
        """Write a key of our own into the table; ValueError names a bad key or value."""
        self._view.local_set(key, value, now)

    def local_delete(self, key: str, now: float) -> None:
        self._view.local_delete(key, now)

    def set_meta(self, meta: dict[str, Any], now: float) -> None:
        self._view.set_meta(meta)

    def drop_owner(self, owner: str) -> None:
        """Forget a node's table entries now (they come back with its next news)."""
        self._view.table.drop_owner(owner)

    # --- time --------------------------------------------------------------------------

    def tick(self, now: float) -> list[Outbound]:
        out: list[Outbound] = []
        view, config = self._view, self.config
        if view.suspicions:
            view.expire_suspicions(now)
        if self._probe is not None:
            out += self._advance_probe(self._probe, now)
        if now >= self._next_probe:
            self._next_probe = max(self._next_probe + config.probe_interval, now)
            self._housekeeping(now)
            if not view.leaving:
                out += self._start_probe(now)
        if now >= self._next_gossip:
            self._next_gossip = now + config.gossip_interval
            if len(view.queue):
                out += self._gossip_to(
                    self._random_members(config.gossip_nodes, self._gossip_target(now))
                )
        if now >= self._next_push_pull:
            self._next_push_pull = now + config.push_pull_period(view.live)
            out += self._sync_with(self._random_members(1, lambda m: m.state == ALIVE))
        if now >= self._next_reconnect:
            self._next_reconnect = now + config.reconnect_interval
            dead = sorted(n for n in view.gone if view.members[n].state == DEAD)
            if dead and not view.leaving:
                out += self._sync_with([view.members[self._rng.choice(dead)]])
        return out

    def _housekeeping(self, now: float) -> None:
        self._view.reap(now)
        for seq in [s for s, r in self._relays.items() if r.expires <= now]:
            del self._relays[seq]

    def _start_probe(self, now: float) -> list[Outbound]:
        target = self._next_probe_target()
        if target is None:
            return []
        seq = self._next_seq()
        config = self.config
        self._probe = _Probe(
            seq, target.node_id, now + config.probe_timeout, now + config.probe_interval
        )
        return [
            Outbound(target.address, Ping(seq, target.node_id, self._news(len(target.node_id))))
        ]

    def _next_probe_target(self) -> Member | None:
        view = self._view
        order = view.order
        for _ in range(len(order) + 1):
            if self._probe_index >= len(order):
                self._rng.shuffle(order)
                self._probe_index = 0
                if not order:
                    return None
            member = view.members[order[self._probe_index]]
            self._probe_index += 1
            if not member.gone:
                return member
        return None

    def _advance_probe(self, probe: _Probe, now: float) -> list[Outbound]:
        target = self._view.members.get(probe.target)
        if target is None or target.gone:
            self._probe = None
            return []
        if now >= probe.end:
            self._probe = None
            self._view.apply(Suspect(target.node_id, target.incarnation, self.node_id), now)
            return []
        if probe.indirect or now < probe.ack_deadline:
            return []
        probe.indirect = True
        helpers = self._random_members(
            self.config.indirect_checks, lambda m: m.state == ALIVE and m.node_id != target.node_id
        )
        extra = len(target.node_id) + len(target.address[0])
        return [
            Outbound(
                h.address, PingReq(probe.seq, target.node_id, target.address, self._news(extra))
            )
            for h in helpers
        ]

    # --- messages ----------------------------------------------------------------------

    def handle(self, src: Address, msg: Message, now: float) -> list[Outbound]:
        """One message from `src` (its gossip address, or the peer of a stream)."""
        if isinstance(msg, (Ping, Ack, PingReq, Gossip)):
            self._absorb(msg.news, now)
        if isinstance(msg, Ping):
            if msg.target != self.node_id:
                return []  # meant for a node that used to live at this address
            return [Outbound(src, Ack(msg.seq, self._news(0)))]
        if isinstance(msg, Ack):
            return self._on_ack(msg, now)
        if isinstance(msg, PingReq):
            seq = self._next_seq()
            self._relays[seq] = _Relay(src, msg.seq, now + self.config.probe_interval)
            return [Outbound(msg.address, Ping(seq, msg.target, self._news(len(msg.target))))]
        if isinstance(msg, SyncRequest):
            self._view.merge_remote(msg.sender, msg.members, msg.entries, now)
            return [Outbound(src, SyncResponse(self.node_id, *self._state()))]
        if isinstance(msg, SyncResponse):
            self._view.merge_remote(msg.sender, msg.members, msg.entries, now)
        return []

    def _on_ack(self, msg: Ack, now: float) -> list[Outbound]:
        if self._probe is not None and msg.seq == self._probe.seq:
            self._probe = None
            return []
        relay = self._relays.pop(msg.seq, None)
        if relay is None:
            return []
        return [Outbound(relay.origin, Ack(relay.origin_seq, self._news(0)))]

    def _absorb(self, news: tuple[News, ...], now: float) -> None:
        apply = self._view.apply
        for n in news:
            apply(n, now)

    # --- helpers -----------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & _SEQ_MASK
        return self._seq

    def _news(self, extra: int) -> tuple[News, ...]:
        config = self.config
        budget = config.udp_packet_limit - config.packet_overhead - _HEADER_BYTES - extra
        return self._view.queue.take(budget, config.retransmit_limit(self._view.live))

    def _gossip_target(self, now: float) -> Callable[[Member], bool]:
        window = self.config.gossip_to_the_dead_time
        return lambda m: m.state != LEFT and (m.state != DEAD or now - m.since < window)

    def _gossip_to(self, targets: list[Member]) -> list[Outbound]:
        out = []
        for m in targets:
            news = self._news(0)
            if not news:
                break
            out.append(Outbound(m.address, Gossip(news)))
        return out

    def _random_members(self, k: int, accept: Callable[[Member], bool]) -> list[Member]:
        """Up to k distinct random other members passing `accept` (memberlist kRandomNodes):
        a few random draws, which nearly always suffice, then a scan for the rest."""
        order, members, rng = self._view.order, self._view.members, self._rng
        chosen: dict[str, Member] = {}
        if len(order) > 4 * k:
            for _ in range(3 * k + 8):
                m = members[order[rng.randrange(len(order))]]
                if m.node_id not in chosen and accept(m):
                    chosen[m.node_id] = m
                    if len(chosen) == k:
                        return list(chosen.values())
        rest = [members[n] for n in order if n not in chosen and accept(members[n])]
        return list(chosen.values()) + rng.sample(rest, min(k - len(chosen), len(rest)))

    def _state(self) -> tuple[tuple[Member, ...], tuple[TableEntry, ...]]:
        return tuple(self._view.members.values()), tuple(self._view.table.entries())

    def _sync_request(self, join: bool) -> SyncRequest:
        return SyncRequest(self.node_id, join, *self._state())

    def _sync_with(self, targets: list[Member]) -> list[Outbound]:
        return [Outbound(m.address, self._sync_request(join=False)) for m in targets]
