"""Power-of-two-choices least-connections over a service's endpoints. Pure: no clock, no I/O.

Two distinct endpoints are drawn at random with probability proportional to their weight and
the one with fewer active connections per unit of weight wins (Mitzenmacher's "power of two
choices": nearly the balance of full least-connections without scanning every endpoint, and
no herd on a single least-loaded endpoint when many balancers share one table).

Randomness and time arrive as arguments, so every decision replays in tests. The picker also
keeps the books the data plane needs: active connections per endpoint (which survive an
endpoint's removal while its connections drain) and a short quarantine for endpoints whose
connect just failed, so that new connections stop paying for a retry.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from netoverlay.lb.types import Endpoint, EndpointKey

# How long an endpoint that refused a connection is skipped, unless nothing else is left.
QUARANTINE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class _Candidates:
    endpoints: tuple[Endpoint, ...]
    cumulative: tuple[int, ...]  # running sum of weights, for weighted draws by bisection

    @classmethod
    def of(cls, endpoints: Iterable[Endpoint]) -> _Candidates:
        ordered = tuple(endpoints)
        total, cumulative = 0, []
        for endpoint in ordered:
            total += endpoint.weight
            cumulative.append(total)
        return cls(ordered, tuple(cumulative))


class Picker:
    """The endpoints of one service and the connections open to each."""

    __slots__ = ("_candidates", "_active", "_quarantined_until")

    def __init__(self, endpoints: Iterable[Endpoint] = ()) -> None:
        self._candidates = _Candidates.of(())
        self._active: dict[EndpointKey, int] = {}
        self._quarantined_until: dict[EndpointKey, float] = {}
        self.replace(endpoints)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._candidates.endpoints

    def replace(self, endpoints: Iterable[Endpoint]) -> None:
        """Swap the endpoint set. Removed endpoints get no new connections; the counts of
        their open connections stay until those close (drain, not cut)."""
        unique = {e.key: e for e in endpoints}
        self._candidates = _Candidates.of(sorted(unique.values(), key=lambda e: e.key))
        self._quarantined_until = {k: t for k, t in self._quarantined_until.items() if k in unique}

    def active(self, key: EndpointKey) -> int:
        return self._active.get(key, 0)

    def opened(self, endpoint: Endpoint) -> None:
        self._active[endpoint.key] = self._active.get(endpoint.key, 0) + 1

    def closed(self, endpoint: Endpoint) -> None:
        left = self._active.get(endpoint.key, 0) - 1
        if left > 0:
            self._active[endpoint.key] = left
        else:
            self._active.pop(endpoint.key, None)

    def failed(self, endpoint: Endpoint, now: float) -> None:
        """A connect to `endpoint` failed at `now`: skip it for a while."""
        self._quarantined_until[endpoint.key] = now + QUARANTINE_SECONDS

    def succeeded(self, endpoint: Endpoint) -> None:
        self._quarantined_until.pop(endpoint.key, None)

    def pick(
        self, rng: random.Random, now: float, exclude: Collection[EndpointKey] = ()
    ) -> Endpoint | None:
        """An endpoint for a new connection, never one in `exclude` (already tried for this
        connection). Quarantined endpoints are used only when no other is left. None when
        every endpoint is excluded or there are none."""
        candidates = self._candidates
        if self._quarantined_until:
            self._quarantined_until = {k: t for k, t in self._quarantined_until.items() if t > now}
        if exclude or self._quarantined_until:
            allowed = [e for e in candidates.endpoints if e.key not in exclude]
            healthy = [e for e in allowed if e.key not in self._quarantined_until]
            candidates = _Candidates.of(healthy or allowed)
        return self._two_choices(candidates, rng)

    def _two_choices(self, candidates: _Candidates, rng: random.Random) -> Endpoint | None:
        endpoints, cumulative = candidates.endpoints, candidates.cumulative
        if len(endpoints) <= 1:
            return endpoints[0] if endpoints else None
        total = cumulative[-1]
        first = bisect.bisect_right(cumulative, rng.randrange(total))
        # Draw the second among the others: sample over the total minus the first's weight and
        # step over the first's slice, so the pair is distinct without a retry loop.
        first_start = cumulative[first] - endpoints[first].weight
        point = rng.randrange(total - endpoints[first].weight)
        if point >= first_start:
            point += endpoints[first].weight
        second = bisect.bisect_right(cumulative, point)
        a, b = endpoints[first], endpoints[second]
        # Compare active/weight without division: a wins ties, and a was drawn at random.
        return a if self.active(a.key) * b.weight <= self.active(b.key) * a.weight else b
