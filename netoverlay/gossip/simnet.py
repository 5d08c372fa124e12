"""An in-memory network of gossip cores in simulated time, for tests and benchmarks.

One heap of timed events (deliveries and ticks); every message really goes through the
codec, so sizes are real and decoding is exercised. Loss, delay and partitions (blocked
(src, dst) pairs, one-way if you like) are deterministic for a given seed. Streams (push-pull)
are not lossy but do not cross a partition in either direction, like a TCP connection.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable

from netoverlay.gossip import codec
from netoverlay.gossip.core import GossipCore
from netoverlay.gossip.model import Address, Event, Outbound

Listener = Callable[[Address, Event, float], None]
# (when, tie-breaker, to whom, (from, datagram)); a tick carries no datagram.
_Due = tuple[float, int, Address, tuple[Address, bytes] | None]


class SimNetwork:
    def __init__(
        self,
        seed: int = 0,
        *,
        loss: float = 0.0,
        delay: tuple[float, float] = (0.0005, 0.002),
        overhead: int = 37,
    ) -> None:
        self.now = 0.0
        self.loss = loss
        self.delay = delay
        # Bytes a real packet carries beyond the encoded message (the sealing).
        self.overhead = overhead
        self.cores: dict[Address, GossipCore] = {}
        self.blocked: set[tuple[Address, Address]] = set()
        self.listener: Listener | None = None
        self.packets_sent: Counter[Address] = Counter()
        self.bytes_sent: Counter[Address] = Counter()
        self.stream_bytes_sent: Counter[Address] = Counter()
        self._rng = random.Random(seed)
        self._heap: list[_Due] = []
        self._order = itertools.count()
        self._tick_at: dict[Address, float] = {}

    # --- topology ------------------------------------------------------------------------

    def add(self, core: GossipCore) -> GossipCore:
        """Attach a core at its own address (replacing a stopped one there: a restart)."""
        address = core.local.address
        self.cores[address] = core
        self._tick_at.pop(address, None)
        self._schedule(address, core)
        return core

    def stop(self, address: Address) -> GossipCore:
        """Crash a node: it stops ticking and everything sent to it is lost."""
        self._tick_at.pop(address, None)
        return self.cores.pop(address)

    def block(self, src: Address, dst: Address) -> None:
        """Drop everything from src to dst (one way)."""
        self.blocked.add((src, dst))

    def partition(self, side_a: Iterable[Address], side_b: Iterable[Address]) -> None:
        side_b = list(side_b)
        for a in side_a:
            for b in side_b:
                self.blocked.update({(a, b), (b, a)})

    def heal(self) -> None:
        self.blocked.clear()

    # --- driving -------------------------------------------------------------------------

    def send(self, src: Address, outbound: Iterable[Outbound]) -> None:
        for out in outbound:
            if out.is_stream and (
                out.to not in self.cores
                or (src, out.to) in self.blocked
                or (out.to, src) in self.blocked
            ):
                continue  # the connection fails: nothing is transferred
            data = codec.encode(out.message)
            size = len(data) + self.overhead
            if out.is_stream:
                self.stream_bytes_sent[src] += size
            else:
                self.packets_sent[src] += 1
                self.bytes_sent[src] += size
                if (src, out.to) in self.blocked or (self.loss and self._rng.random() < self.loss):
                    continue
            at = self.now + self._rng.uniform(*self.delay)
            heapq.heappush(self._heap, (at, next(self._order), out.to, (src, data)))

    def run_until(self, until: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= until:
            at, _, address, datagram = heapq.heappop(heap)
            core = self.cores.get(address)
            if core is None:
                continue
            self.now = at
            if datagram is None:  # a tick
                if self._tick_at.get(address) != at:
                    continue  # superseded by an earlier tick
                del self._tick_at[address]
                out = core.tick(at)
            else:
                src, data = datagram
                out = core.handle(src, codec.decode(data), at)
            self._after(address, core, out)
        self.now = until

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until_true(
        self, condition: Callable[[], bool], timeout: float, step: float = 0.1
    ) -> bool:
        """Run until `condition()` holds (checked every `step` of simulated time)."""
        end = self.now + timeout
        while not condition():
            if self.now >= end:
                return False
            self.run_until(min(end, self.now + step))
        return True

    def act(
        self, address: Address, action: Callable[[GossipCore, float], list[Outbound] | None]
    ) -> None:
        """Do something to one core now (join, leave, a table write) and send what results."""
        core = self.cores[address]
        self._after(address, core, action(core, self.now) or [])

    def _after(self, address: Address, core: GossipCore, out: list[Outbound]) -> None:
        events = core.take_events()
        if self.listener is not None:
            for event in events:
                self.listener(address, event, self.now)
        if out:
            self.send(address, out)
        self._schedule(address, core)

    def _schedule(self, address: Address, core: GossipCore) -> None:
        due = max(core.next_deadline(), self.now)
        current = self._tick_at.get(address)
        if current is None or due < current:
            self._tick_at[address] = due
            heapq.heappush(self._heap, (due, next(self._order), address, None))
