"""Each node's load report for the autoscaler: every `interval` seconds, one proposal of the
node's figures for the autoscaled services (consensus.metrics.ReportMetrics), or none.

Per service: the mean cpu percent of its running tasks on this node (the runtime driver's
stats, asked only for services that scale on cpu) and the requests per second this node's
load balancer forwarded to it (the proxy data plane counts accepted connections; the kernel
nftables data plane keeps no counters, so its ports count nothing). A report that equals the
last one sent is skipped, unless it carries load and the last one is about to go stale: the
autoscaler takes a missing or stale report for no load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from consensus.metrics import ReportMetrics, ServiceSample
from consensus.state import Result
from consensus.store import StateVersion
from consensus.tasks import Service, Task, services, tasks_on
from netoverlay.lb.stats import ServiceStats
from node.runtime.driver import Driver

log = logging.getLogger(__name__)

# How often a node reports, by default (`shoal node start --metrics-interval`).
METRICS_INTERVAL = 5.0
# A report older than this many intervals is stale for the autoscaler; one carrying load is
# sent again after REFRESH intervals, so a node under steady load never looks idle.
STALE_INTERVALS = 3.0
REFRESH_INTERVALS = 2.0


def ingress_rates(
    before: Mapping[int, ServiceStats], after: Mapping[int, ServiceStats]
) -> dict[str, float]:
    """Connections per second by service between two snapshots of the proxy's ports. A port
    opened (or reopened, counters reset) in between counts from its new snapshot only."""
    rates: dict[str, float] = defaultdict(float)
    for number, now in after.items():
        earlier = before.get(number)
        if (
            earlier is not None
            and earlier.service == now.service
            and now.connections_total >= earlier.connections_total
        ):
            rates[now.service] += now.rates_since(earlier).connections_per_second
    return dict(rates)


@dataclass(frozen=True, slots=True)
class Scope:
    """What this node reports on: the autoscaled services and its running tasks of each."""

    services: tuple[Service, ...]
    own_tasks: Mapping[str, tuple[Task, ...]]  # by service id

    @staticmethod
    def read(state: StateVersion, node_id: str) -> Scope:
        scaled = tuple(s for s in services(state).values() if s.spec.autoscale is not None)
        ids = {s.id for s in scaled}
        own: dict[str, list[Task]] = defaultdict(list)
        if ids:
            for task in tasks_on(state, node_id).values():
                if task.service_id in ids and task.state == "running" and task.desired == "running":
                    own[task.service_id].append(task)
        return Scope(scaled, {k: tuple(v) for k, v in own.items()})

    def cpu_tasks(self) -> list[str]:
        """Tasks whose cpu counts: those of services that scale on cpu."""
        return [
            t.id
            for s in self.services
            if s.spec.autoscale.metric == "cpu"  # type: ignore[union-attr]
            for t in self.own_tasks.get(s.id, ())
        ]


def build_samples(
    scope: Scope, cpu: Mapping[str, float | None], rates: Mapping[str, float]
) -> tuple[ServiceSample, ...]:
    """This node's samples, rounded (a tenth) so that noise is not news; services with no
    task here and no traffic through here are left out."""
    samples = []
    for service in sorted(scope.services, key=lambda s: s.name):
        own = scope.own_tasks.get(service.id, ())
        rps = round(rates.get(service.name, 0.0), 1)
        if not own and not rps:
            continue
        measured = [cpu[t.id] for t in own if cpu.get(t.id) is not None]
        mean = round(sum(measured) / len(measured), 1) if measured else None  # type: ignore[arg-type]
        samples.append(ServiceSample(service.name, service.id, len(own), mean, rps))
    return tuple(samples)


@dataclass(frozen=True, slots=True)
class Sent:
    at: float
    samples: tuple[ServiceSample, ...]


def worth_sending(
    last: Sent | None, samples: tuple[ServiceSample, ...], now: float, refresh: float
) -> bool:
    if last is None:
        return bool(samples)
    if samples != last.samples:
        return True
    return not all(s.idle for s in samples) and now - last.at >= refresh


class MetricsReporter:
    """`read_state` yields the replicated state (held briefly); `ingress_stats` returns the
    proxy's counters by published port; `submit` commits a command through the leader."""

    def __init__(
        self,
        *,
        node_id: str,
        read_state: Callable[[], StateVersion],
        driver: Driver,
        ingress_stats: Callable[[], Mapping[int, ServiceStats]],
        submit: Callable[[ReportMetrics], Awaitable[Result]],
        interval: float = METRICS_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._node_id = node_id
        self._read_state = read_state
        self._driver = driver
        self._ingress_stats = ingress_stats
        self._submit = submit
        self.interval = interval
        self._clock = clock
        self._last: Sent | None = None
        self.reports = 0  # proposals committed, for status pages and tests

    async def run(self) -> None:
        before = self._ingress_stats()
        while True:
            await asyncio.sleep(self.interval)
            after = self._ingress_stats()
            await self.report(ingress_rates(before, after))
            before = after

    async def report(self, rates: Mapping[str, float]) -> None:
        """Measure, and propose the report when it is news."""
        with self._read_state() as state:
            scope = Scope.read(state, self._node_id)
        ids = scope.cpu_tasks()
        stats = await asyncio.gather(
            *(self._driver.stats(task_id) for task_id in ids), return_exceptions=True
        )
        cpu = {
            task_id: s.cpu_percent
            for task_id, s in zip(ids, stats, strict=False)
            if s is not None and not isinstance(s, BaseException)
        }
        samples = build_samples(scope, cpu, rates)
        now = self._clock()
        if not worth_sending(self._last, samples, now, REFRESH_INTERVALS * self.interval):
            return
        try:
            result = await self._submit(ReportMetrics(self._node_id, now, samples))
        except Exception as exc:  # no quorum, leader unreachable: the next interval tries again
            log.info("metrics: report not committed: %s", exc)
            return
        if not result.ok:
            log.warning("metrics: report refused: %s", result.error)
            return
        self._last = Sent(now, samples)
        self.reports += 1
