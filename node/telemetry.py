"""A node's Prometheus metrics (prometheus-client), served at `GET /metrics`.

Events are counted where they happen: API requests (by route, method and status, with their
latency), commits of writes through this node, applies of committed entries, scheduling
rounds, leader changes. Levels (Raft term and indexes, tasks by state, gossip members and
packets, load balancer counters, the process itself) are read when Prometheus scrapes, from
the sources the API answers from, so the two cannot disagree. Every label takes values from
a bounded set: route templates rather than paths, known methods, states, services, ports.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from consensus.model import NodeStatus
from consensus.nodes import nodes
from consensus.raft import RAFT_PORT_DROPS, RaftStatus
from consensus.store import StateVersion
from consensus.tasks import services, tasks
from netoverlay.gossip.model import Member, MemberState
from netoverlay.gossip.service import GossipStats
from netoverlay.lb.stats import ServiceStats
from node.feed.stats import FEED_COUNTS

# Methods the API serves; anything else is counted as "other", so a client cannot grow the
# label set.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_SLOW = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Sources:
    """Where the levels are read at scrape time."""

    raft_status: Callable[[], RaftStatus]
    read_state: Callable[[], StateVersion]
    gossip_members: Callable[[], list[Member]]
    gossip_stats: Callable[[], GossipStats]
    ingress_stats: Callable[[], dict[int, ServiceStats]]
    scheduler_rounds: Callable[[], int]


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.raft_apply_seconds = Histogram(
            "shoal_raft_apply_seconds",
            "Time to apply one committed entry to the state",
            buckets=_FAST,
            registry=r,
        )
        self.raft_commit_seconds = Histogram(
            "shoal_raft_commit_seconds",
            "Time from proposing a write through this node until it is committed (forwarded "
            "to the leader when this node does not lead)",
            buckets=_SLOW,
            registry=r,
        )
        self.raft_leader_changes = Counter(
            "shoal_raft_leader_changes", "Times this node saw a new Raft leader", registry=r
        )
        self.api_requests = Counter(
            "shoal_api_requests",
            "API requests answered, by route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.api_request_seconds = Histogram(
            "shoal_api_request_duration_seconds",
            "Time to answer an API request (streams: until they end)",
            ["method", "route"],
            buckets=_SLOW,
            registry=r,
        )
        self.scheduler_round_seconds = Histogram(
            "shoal_scheduler_round_duration_seconds",
            "Time to plan one scheduling round on the leader",
            buckets=_SLOW,
            registry=r,
        )
        ProcessCollector(namespace="shoal", registry=r)

    def watch(self, sources: Sources) -> None:
        """Read the levels from `sources` at every scrape."""
        self.registry.register(_Levels(sources))

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition a scraper's Accept header asks for (OpenMetrics or Prometheus
        text), and its Content-Type."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    def middleware(self):
        """Counts and times every request, with the status its client got (including the
        401s and 404s the other middlewares and the router answer)."""

        @web.middleware
        async def count_requests(request: web.Request, handler):
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except asyncio.CancelledError:
                status = 499  # the client went away first (nginx's code for it)
                raise
            finally:
                method = request.method if request.method in _METHODS else "other"
                route = _route(request)
                self.api_requests.labels(method, route, str(status)).inc()
                self.api_request_seconds.labels(method, route).observe(
                    time.perf_counter() - started
                )

        return count_requests


def _route(request: web.Request) -> str:
    """The route template (`/v1/services/{ref}`), or `unmatched`: never the raw path."""
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    canonical = getattr(resource, "canonical", None)
    return canonical if canonical and request.match_info.http_exception is None else "unmatched"


def _feed() -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "shoal_feed_streams", "Members' feed streams this voter serves now", FEED_COUNTS.streams
    )
    for name, doc, value in (
        (
            "snapshots_sent",
            "Snapshots this voter sent members on its feed",
            FEED_COUNTS.snapshots_sent,
        ),
        (
            "dropped_slow",
            "Feed streams this voter dropped because their member did not keep "
            "up (it resumes from its index)",
            FEED_COUNTS.dropped_slow,
        ),
        (
            "snapshots_restored",
            "Snapshots this member restored from a voter's feed",
            FEED_COUNTS.snapshots_restored,
        ),
    ):
        yield CounterMetricFamily(f"shoal_feed_{name}", doc, value=value)


class _Levels:
    """The levels, read at each scrape (a prometheus-client custom collector)."""

    def __init__(self, sources: Sources) -> None:
        self._s = sources

    def collect(self) -> Iterator[Metric]:
        yield from self._raft()
        yield from self._state()
        yield from self._gossip()
        yield from self._load_balancer()

    def _raft(self) -> Iterator[Metric]:
        status = self._s.raft_status()
        for name, doc, value in (
            (
                "term",
                "Current Raft term: every election raises it, so its increase is the "
                "number of elections",
                status.term,
            ),
            ("leader", "1 if this node is the Raft leader", int(status.is_leader)),
            ("has_quorum", "1 if this node's replica sees a quorum", int(status.has_quorum)),
            ("commit_index", "Index of the last committed Raft entry", status.commit_index),
            (
                "applied_index",
                "Index of the last Raft entry this node applied",
                status.last_applied,
            ),
            ("voter", "1 if this node is a Raft voter", int(status.role == "voter")),
        ):
            yield GaugeMetricFamily(f"shoal_raft_{name}", doc, value=value)
        dropped = CounterMetricFamily(
            "shoal_raft_port_dropped",
            "Raft connections dropped, by reason (handshake: no TLS handshake with a cluster "
            "certificate in time; oversized: a frame length above the bound; malformed: a "
            "frame not unpicklable, or on a plain connection not decrypted with the cluster "
            "key or replayed; refused: a certified peer claiming another node's Raft address or "
            "sending a pysyncobj utility command; not_a_voter: a message, not a connection: from "
            "a peer that is not a voter, anything but a read-only replica's answer to the "
            "leader's entries (or, below protocol level 4, its read barrier), or a voter's "
            "second vote in a term)",
            labels=["reason"],
        )
        dropped.add_metric(["handshake"], RAFT_PORT_DROPS.handshake)
        dropped.add_metric(["oversized"], RAFT_PORT_DROPS.oversized)
        dropped.add_metric(["malformed"], RAFT_PORT_DROPS.malformed)
        dropped.add_metric(["refused"], RAFT_PORT_DROPS.refused)
        dropped.add_metric(["not_a_voter"], RAFT_PORT_DROPS.not_a_voter)
        yield dropped
        yield from _feed()
        yield CounterMetricFamily(
            "shoal_scheduler_rounds",
            "Scheduling rounds this node planned and proposed as leader",
            value=self._s.scheduler_rounds(),
        )

    def _state(self) -> Iterator[Metric]:
        with self._s.read_state() as state:
            by_state = Tally((t.service, t.state) for t in tasks(state).values())
            by_status = Tally(n.status for n in nodes(state).values())
            service_count = len(services(state))
        task_gauge = GaugeMetricFamily(
            "shoal_tasks",
            "Tasks in the cluster state by service and state",
            labels=["service", "state"],
        )
        for (service, state_name), count in sorted(by_state.items()):
            task_gauge.add_metric([service, state_name], count)
        yield task_gauge
        node_gauge = GaugeMetricFamily("shoal_nodes", "Nodes by status", labels=["status"])
        for status in NodeStatus.__args__:  # type: ignore[attr-defined]
            node_gauge.add_metric([status], by_status.get(status, 0))
        yield node_gauge
        yield GaugeMetricFamily(
            "shoal_services", "Services in the cluster state", value=service_count
        )

    def _gossip(self) -> Iterator[Metric]:
        by_state = Tally(m.state for m in self._s.gossip_members())
        members = GaugeMetricFamily(
            "shoal_gossip_members",
            "Gossip members this node knows, by the state it believes them in",
            labels=["state"],
        )
        for state in MemberState:
            members.add_metric([state.value], by_state.get(state, 0))
        yield members
        stats = self._s.gossip_stats()
        for direction, packets, size in (
            ("sent", stats.sent_packets, stats.sent_bytes),
            ("received", stats.received_packets, stats.received_bytes),
        ):
            yield CounterMetricFamily(
                f"shoal_gossip_packets_{direction}", f"Gossip packets {direction}", value=packets
            )
            yield CounterMetricFamily(
                f"shoal_gossip_{direction}_bytes", f"Gossip bytes {direction}", value=size
            )
        dropped = CounterMetricFamily(
            "shoal_gossip_packets_dropped", "Gossip packets dropped, by reason", labels=["reason"]
        )
        for reason, value in (
            ("malformed", stats.dropped_malformed),
            ("unauthenticated", stats.dropped_auth),
            ("replayed", stats.dropped_replay),
        ):
            dropped.add_metric([reason], value)
        yield dropped

    def _load_balancer(self) -> Iterator[Metric]:
        labels = ["service", "port"]
        total = CounterMetricFamily(
            "shoal_lb_connections",
            "Connections the routing mesh accepted, by service and published port",
            labels=labels,
        )
        active = GaugeMetricFamily(
            "shoal_lb_connections_active", "Connections the routing mesh holds open", labels=labels
        )
        moved = CounterMetricFamily(
            "shoal_lb",
            "Bytes the routing mesh forwarded",
            labels=[*labels, "direction"],
            unit="bytes",
        )
        errors = CounterMetricFamily(
            "shoal_lb_errors",
            "Routing mesh failures: connect "
            "attempts to a backend that failed (each retry counted), "
            "and client connections closed because no backend could "
            "be reached (rejected)",
            labels=[*labels, "kind"],
        )
        for port, s in sorted(self._s.ingress_stats().items()):
            where = [s.service, str(port)]
            total.add_metric(where, s.connections_total)
            active.add_metric(where, s.connections_active)
            moved.add_metric([*where, "in"], s.bytes_in)
            moved.add_metric([*where, "out"], s.bytes_out)
            errors.add_metric([*where, "connect"], s.connect_failures)
            errors.add_metric([*where, "rejected"], s.rejected)
        yield from (total, active, moved, errors)
