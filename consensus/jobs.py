"""Jobs: services whose tasks run to completion instead of forever.

A job is a `ServiceSpec` with `job` set (Swarm's `replicated-job` and `global-job`, a
Kubernetes Job): `mode: replicated` runs `completions` tasks to success, at most
`parallelism` at once; `mode: global` runs one to success on every eligible node. A task
that succeeded never runs again; a failed one is retried after an exponential backoff until
the job has failed `backoff_limit` + 1 times. Manifest parsers target this type:
`ServiceSpec(..., job=JobConfig(completions=..., parallelism=...))`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

# Bounds that keep a typo from making a million tasks or a job that never ends.
MAX_COMPLETIONS = 100_000
MAX_BACKOFF_LIMIT = 1_000
DEFAULT_BACKOFF_LIMIT = 6  # Kubernetes' default
DEFAULT_BACKOFF_DELAY = 10.0  # Kubernetes' first delay; it doubles per failure of a slot


@dataclass(frozen=True, slots=True)
class JobConfig:
    completions: int = 1  # successful tasks a replicated job needs (ignored for global jobs)
    parallelism: int = 1  # tasks running at once; 0 = no bound
    backoff_limit: int = DEFAULT_BACKOFF_LIMIT  # failed tasks tolerated before the job fails
    backoff_delay: float = DEFAULT_BACKOFF_DELAY  # first retry delay of a slot, then doubled
    deadline: float = 0.0  # seconds after creation at which an unfinished job fails; 0 = none
    ttl_after_finished: float = (
        0.0  # seconds a finished job (and its logs) stays; 0 = until removed
    )


JobOutcome = Literal["complete", "failed"]


@dataclass(frozen=True, slots=True)
class JobEnd:
    """How and when a job finished, recorded once by the leader's scheduler."""

    state: JobOutcome
    reason: str
    at: float


def check_job(job: JobConfig | None, check: Callable[[bool, str, str], None]) -> None:
    """Report what is wrong with a job's config through `check(ok, field, reason)`."""
    if job is None:
        return
    check(
        1 <= job.completions <= MAX_COMPLETIONS,
        "job.completions",
        f"must be between 1 and {MAX_COMPLETIONS}, not {job.completions}",
    )
    check(
        0 <= job.parallelism <= MAX_COMPLETIONS,
        "job.parallelism",
        f"must be between 0 (no bound) and {MAX_COMPLETIONS}, not {job.parallelism}",
    )
    check(
        0 <= job.backoff_limit <= MAX_BACKOFF_LIMIT,
        "job.backoff_limit",
        f"must be between 0 and {MAX_BACKOFF_LIMIT}, not {job.backoff_limit}",
    )
    for name in ("backoff_delay", "deadline", "ttl_after_finished"):
        value = getattr(job, name)
        check(
            math.isfinite(value) and value >= 0,
            f"job.{name}",
            f"must be seconds (0 or more), not {value}",
        )
