"""Autoscaling decisions as pure functions of the replicated state and `now`.

Per replica, the load is the services' figures from the nodes' fresh reports
(consensus.metrics): for `rps` the requests per second all load balancers forwarded divided by
the running replicas; for `cpu` the mean cpu percent of the running replicas. A node re-sends
a report with load in it before it goes stale and leaves an idle one be, so a missing or stale
report counts as no load. The step is Kubernetes' rule:

    desired = ceil(running * per_replica / target), clamped to [min, max]

with nothing done while per_replica / target is within the tolerance band around 1, no
scale-up within `cooldown_up` of the service's last spec change and no scale-down within
`cooldown_down` of it (any change restarts both: the autoscaler's own, a user's `service
scale`, an update). A replica count outside [min, max] is corrected at once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consensus.autoscale import AutoscaleSpec, Metric
from consensus.metrics import NodeMetrics, ServiceSample
from consensus.tasks import Service, Task

# Float noise must not turn an exact fit (ratio 2.0 -> 2 replicas) into one more.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Decision:
    service: str
    current: int  # the spec's replica count
    desired: int  # what it should be now (== current: hold)
    metric: Metric
    value: float | None  # the load per replica; None when there was nothing to measure
    target: float
    reason: str
    wake_at: float | None = None  # when a cooldown holding a change ends

    @property
    def changes(self) -> bool:
        return self.desired != self.current


def running_replicas(tasks: Iterable[Task]) -> Counter[str]:
    """Running tasks told to run, by service id."""
    return Counter(t.service_id for t in tasks if t.state == "running" and t.desired == "running")


def fresh_samples(
    rows: Iterable[NodeMetrics], service_id: str, now: float, max_age: float
) -> list[ServiceSample]:
    return [
        s
        for row in rows
        if now - row.at <= max_age
        for s in row.samples
        if s.service_id == service_id
    ]


def per_replica(metric: Metric, samples: list[ServiceSample], running: int) -> float | None:
    """The load per running replica, or None when there is nothing to measure."""
    if running <= 0:
        return None
    if metric == "rps":
        return sum(s.rps for s in samples) / running
    measured = [(s.cpu_percent, s.tasks) for s in samples if s.cpu_percent is not None]
    # Tasks the runtime could not measure are left out of the mean rather than taken as idle.
    unknown = sum(s.tasks for s in samples if s.cpu_percent is None)
    counted = max(running - unknown, sum(tasks for _, tasks in measured))
    if counted <= 0:
        return None
    return sum(cpu * tasks for cpu, tasks in measured) / counted


def decide(
    name: str,
    policy: AutoscaleSpec,
    current: int,
    running: int,
    value: float | None,
    now: float,
    last_change: float,
) -> Decision:
    """What to do with `name` (`current` replicas in its spec, `running` of them measured at
    `value` per replica) at `now`, its spec having last changed at `last_change`."""

    def hold(reason: str, wake_at: float | None = None) -> Decision:
        return Decision(
            name, current, current, policy.metric, value, policy.target, reason, wake_at
        )

    def scale(to: int, reason: str) -> Decision:
        return Decision(name, current, to, policy.metric, value, policy.target, reason)

    bounded = policy.clamp(current)
    if bounded != current:
        edge = "minimum" if bounded > current else "maximum"
        return scale(bounded, f"{current} replicas is outside the {edge} of {bounded}")
    if value is None:
        return hold("no running replica to measure")
    load = f"{value:.1f} {policy.unit} per replica, target {policy.target:g}"
    ratio = value / policy.target
    if abs(ratio - 1.0) <= policy.tolerance:
        return hold(f"{load}: within the tolerance of {policy.tolerance:.0%}")
    desired = policy.clamp(max(1, math.ceil(running * ratio - _EPSILON)))
    if desired == current:
        edge = (
            "at the maximum"
            if desired == policy.max and ratio > 1
            else "at the minimum"
            if desired == policy.min and ratio < 1
            else "already"
        )
        return hold(f"{load}: {edge} ({current} replicas)")
    up = desired > current
    ready_at = last_change + (policy.cooldown_up if up else policy.cooldown_down)
    if now < ready_at:
        way = "scale-up" if up else "scale-down"
        return hold(
            f"{load}: {way} to {desired} waits for the cooldown ({ready_at - now:.0f} s left)",
            wake_at=ready_at,
        )
    return scale(desired, f"{load}: {current} -> {desired}")


def evaluate(
    services: Mapping[str, Service],
    tasks: Iterable[Task],
    rows: Iterable[NodeMetrics],
    now: float,
    max_age: float,
) -> list[Decision]:
    """A decision for every autoscaled service, in name order."""
    running = running_replicas(tasks)
    rows = list(rows)
    decisions = []
    for name in sorted(services):
        service = services[name]
        policy = service.spec.autoscale
        if policy is None or service.spec.mode != "replicated":
            continue
        count = running[service.id]
        value = per_replica(policy.metric, fresh_samples(rows, service.id, now, max_age), count)
        decisions.append(
            decide(name, policy, service.spec.replicas, count, value, now, service.updated_at)
        )
    return decisions
