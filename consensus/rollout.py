"""A service's rollout: how far replacing its tasks with those of a new spec has come.

It lives on the Service in the replicated state and changes only through commands: the
leader's scheduler records progress (`consensus.updates.RecordRollout`), and a rollback
(`consensus.updates.RollbackService`) starts one. Timestamps come from those commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from consensus.services import UpdateConfig

# canary: the first `canary` tasks were replaced; the rest wait for a promote.
RolloutState = Literal["updating", "canary", "paused", "completed", "rolling_back", "rolled_back"]
RolloutKind = Literal["update", "rollback"]
# A rollout in one of these states still replaces tasks.
ACTIVE: frozenset[str] = frozenset({"updating", "canary", "rolling_back"})


@dataclass(frozen=True, slots=True)
class Watch:
    """A replacement task of the running batch. `ready_at` is when it was first seen running
    and healthy (0: not yet); it counts as updated once it stayed so for the monitor period."""

    task_id: str
    ready_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Rollout:
    service_id: str
    version: int  # the spec version being rolled out
    from_version: int  # the version that was current when it started
    kind: RolloutKind = "update"
    state: RolloutState = "updating"
    # The update config (or, rolling back, the rollback config) this rollout follows.
    config: UpdateConfig = UpdateConfig()
    started_at: float = 0.0
    updated_at: float = 0.0
    completed_at: float = 0.0
    batch: tuple[Watch, ...] = ()
    batch_done_at: float = 0.0  # when the last batch finished: the next waits `config.delay`
    updated: int = 0  # replacements that passed their monitor period
    failed: int = 0  # replacements that failed or turned unhealthy within it
    remaining: int = 0  # tasks still of an older spec, not yet in a batch
    reason: str = ""  # why it started (a rollback: by hand, or which update failed)
    promoted: bool = False  # its canaries were promoted: the rest are replaced
    message: str = ""  # where it stands

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def total(self) -> int:
        return self.updated + self.failed + len(self.batch) + self.remaining
