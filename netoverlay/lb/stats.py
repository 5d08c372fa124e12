"""Per-service counters of the proxy data plane, and the rates a reader derives from them.

The data plane bumps plain integers on its hot path; readers (the API, the autoscaler) take
frozen snapshots and compute rates between two of them, so no reader's window or clock lives
inside the data plane.
"""

from __future__ import annotations

from dataclasses import dataclass


class ServiceCounters:
    """Mutable counters, owned by one listener and touched only on the event loop."""

    __slots__ = (
        "connections_total",
        "connections_active",
        "bytes_in",
        "bytes_out",
        "connect_failures",
        "rejected",
    )

    def __init__(self) -> None:
        self.connections_total = 0
        self.connections_active = 0
        self.bytes_in = 0  # client to backend
        self.bytes_out = 0  # backend to client
        self.connect_failures = 0  # connect attempts that failed, each retry counted
        self.rejected = 0  # client connections closed because no endpoint could be reached

    def snapshot(self, service: str, port: int, at: float) -> ServiceStats:
        return ServiceStats(
            service,
            port,
            at,
            self.connections_total,
            self.connections_active,
            self.bytes_in,
            self.bytes_out,
            self.connect_failures,
            self.rejected,
        )


@dataclass(frozen=True, slots=True)
class ServiceRates:
    connections_per_second: float
    bytes_in_per_second: float
    bytes_out_per_second: float
    connect_failures_per_second: float


@dataclass(frozen=True, slots=True)
class ServiceStats:
    """Counters of one published port at monotonic time `at`."""

    service: str
    published_port: int
    at: float
    connections_total: int
    connections_active: int
    bytes_in: int
    bytes_out: int
    connect_failures: int
    rejected: int

    def rates_since(self, earlier: ServiceStats) -> ServiceRates:
        """Per-second rates between an earlier snapshot of the same port and this one. The
        proxy works per connection, so connections per second stand in for requests."""
        elapsed = self.at - earlier.at
        if elapsed <= 0:
            return ServiceRates(0.0, 0.0, 0.0, 0.0)
        return ServiceRates(
            (self.connections_total - earlier.connections_total) / elapsed,
            (self.bytes_in - earlier.bytes_in) / elapsed,
            (self.bytes_out - earlier.bytes_out) / elapsed,
            (self.connect_failures - earlier.connect_failures) / elapsed,
        )
