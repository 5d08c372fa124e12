"""Lifeguard's suspicion timer (memberlist suspicion.go), as data: no timers, a deadline.

A suspicion starts at the maximum timeout and shrinks toward the minimum as independent
members confirm it, so that a really dead node is declared quickly while a lone, possibly
confused accuser gives the suspect plenty of time to refute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def suspicion_timeout(confirmations: int, expected: int, low: float, high: float) -> float:
    """timeout = max(low, high - log(c + 1) / log(k + 1) * (high - low))."""
    if expected < 1:
        return low
    fraction = math.log(confirmations + 1) / math.log(expected + 1)
    return max(low, high - fraction * (high - low))


@dataclass(slots=True)
class Suspicion:
    incarnation: int
    started: float
    expected: int
    low: float
    high: float
    # The accusers: the first one started the suspicion, the others confirm it.
    accusers: set[str] = field(default_factory=set)

    @property
    def deadline(self) -> float:
        confirmations = max(0, len(self.accusers) - 1)
        return self.started + suspicion_timeout(confirmations, self.expected, self.low, self.high)

    def confirm(self, accuser: str) -> bool:
        """Count an independent confirmation; False if it adds nothing (already counted)."""
        if accuser in self.accusers or len(self.accusers) - 1 >= self.expected:
            return False
        self.accusers.add(accuser)
        return True
