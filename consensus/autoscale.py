"""A service's autoscaling policy and the record of the autoscaler's last step.

The policy is part of the spec (`ServiceSpec.autoscale`); the record lives on the Service in
the replicated state and changes only through `consensus.scaling.ScaleService`, which
carries the time and the reason. Neither module below imports services or tasks, so both can
embed these types.

Targets: `rps` is requests per second per running replica, counted by the load balancer
(for its TCP proxy a request is an accepted connection); `cpu` is percent of ONE core per
replica (100 = one core busy), as `docker stats` shows it, and not of the reservation, so
that a service without reservations can autoscale too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Metric = Literal["cpu", "rps"]
# Scale-up soon (load that lasts 30 s is real and a replica starts in seconds); scale-down
# later but well below Kubernetes' 5 minutes: nodes report every 5 s, so 2 minutes is about
# 24 fresh reports of the lower load, enough to ride out a lull between bursts, while
# replicas that are cheap to start again do not idle for 5 minutes.
COOLDOWN_UP = 30.0
COOLDOWN_DOWN = 120.0
TOLERANCE = 0.1


@dataclass(frozen=True, slots=True)
class AutoscaleSpec:
    """Keep `metric` per replica near `target`, with between `min` and `max` replicas.
    Within `tolerance` (a fraction of the target) nothing changes; after any change of the
    service's spec, a scale-up waits `cooldown_up` seconds and a scale-down `cooldown_down`."""

    max: int
    target: float
    min: int = 1
    metric: Metric = "cpu"
    tolerance: float = TOLERANCE
    cooldown_up: float = COOLDOWN_UP
    cooldown_down: float = COOLDOWN_DOWN

    def clamp(self, replicas: int) -> int:
        return max(self.min, min(self.max, replicas))

    @property
    def unit(self) -> str:
        return "requests/s" if self.metric == "rps" else "% cpu"


@dataclass(frozen=True, slots=True)
class AutoscaleRecord:
    """The autoscaler's last change of a service: when, from and to how many replicas, and
    what it measured (`value`, per replica) against which `target`."""

    at: float
    from_replicas: int
    to_replicas: int
    metric: Metric
    value: float
    target: float
    reason: str


def check_autoscale(
    policy: AutoscaleSpec | None, mode: str, check: Callable[[bool, str, str], None]
) -> None:
    """Report what is wrong with a policy through `check(ok, field, reason)`."""
    if policy is None:
        return
    check(
        mode == "replicated",
        "autoscale",
        "only replicated services autoscale: a global service runs one task per node",
    )
    check(policy.min >= 1, "autoscale.min", f"must be at least 1, not {policy.min}")
    check(
        policy.max >= policy.min,
        "autoscale.max",
        f"must be at least autoscale.min ({policy.min}), not {policy.max}",
    )
    check(
        math.isfinite(policy.target) and policy.target > 0,
        "autoscale.target",
        f"must be a positive number ({_target_help(policy.metric)}), not {policy.target}",
    )
    check(
        math.isfinite(policy.tolerance) and 0 <= policy.tolerance < 1,
        "autoscale.tolerance",
        f"must be a fraction of the target from 0 up to 1 (0.1 = 10 %), not {policy.tolerance}",
    )
    for name in ("cooldown_up", "cooldown_down"):
        value = getattr(policy, name)
        check(
            math.isfinite(value) and value >= 0,
            f"autoscale.{name}",
            f"must be seconds (0 or more), not {value}",
        )


def _target_help(metric: Metric) -> str:
    return "requests/s per replica" if metric == "rps" else "percent of one core per replica"
