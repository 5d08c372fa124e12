"""The leader's autoscaler: the thin shell around `scheduler.autoscale.evaluate`.

Woken by commits (new load reports, changed services; at most once per `min_interval`), by
the end of a cooldown that held a change, and by the moment a report carrying load goes
stale; only while its node is the Raft leader it reads the inputs, decides off the event
loop, and proposes one `ScaleService` per service to change. The committed record on the
Service is what the event feed turns into a `service.autoscaled` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from consensus.autoscale import AutoscaleRecord
from consensus.metrics import NodeMetrics, node_metrics
from consensus.scaling import ScaleService
from consensus.state import Result
from consensus.store import StateVersion
from consensus.tasks import Service, Task, services, tasks_of_service
from scheduler.autoscale import Decision, evaluate

log = logging.getLogger(__name__)

# After a failed proposal (no quorum, lost leadership), try again this much later.
RETRY_DELAY = 1.0


@dataclass(frozen=True, slots=True)
class Inputs:
    services: dict[str, Service]
    tasks: tuple[Task, ...]
    rows: tuple[NodeMetrics, ...]

    @staticmethod
    def read(state: StateVersion) -> Inputs:
        table = services(state)
        scaled = {name: s for name, s in table.items() if s.spec.autoscale is not None}
        if not scaled:  # the common case: copy nothing else
            return Inputs({}, (), ())
        return Inputs(
            scaled,
            tuple(t for s in scaled.values() for t in tasks_of_service(state, s)),
            tuple(node_metrics(state).values()),
        )


def next_expiry(rows: tuple[NodeMetrics, ...], now: float, max_age: float) -> float | None:
    """When the next fresh report that carries load goes stale (and so counts as none)."""
    times = [
        row.at + max_age
        for row in rows
        if row.at + max_age >= now and not all(s.idle for s in row.samples)
    ]
    return min(times, default=None)


def scale_command(decision: Decision, service: Service, now: float) -> ScaleService:
    record = AutoscaleRecord(
        now,
        decision.current,
        decision.desired,
        decision.metric,
        round(decision.value or 0.0, 2),
        decision.target,
        decision.reason,
    )
    return ScaleService(service.name, service.id, service.version, record)


class Autoscaler:
    """`changed` is set after every commit and leadership change and cleared only here;
    `max_age` is how old a load report may be and still count."""

    def __init__(
        self,
        *,
        read_state: Callable[[], StateVersion],
        changed: asyncio.Event,
        propose: Callable[[Any], Awaitable[Result]],
        is_leader: Callable[[], bool],
        max_age: float,
        min_interval: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._read_state = read_state
        self._changed = changed
        self._propose = propose
        self._is_leader = is_leader
        self._max_age = max_age
        self._min_interval = min_interval
        self._clock = clock
        self.decisions: list[Decision] = []  # the last evaluation, for status pages
        self.scaled = 0  # committed changes, for status pages and tests

    async def run(self) -> None:
        wake_at: float | None = None
        while True:
            timeout = None if wake_at is None else max(0.0, wake_at - self._clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            self._changed.clear()
            wake_at = await self.step() if self._is_leader() else None
            await asyncio.sleep(self._min_interval)

    def _inputs(self) -> Inputs:
        with self._read_state() as state:
            return Inputs.read(state)

    async def step(self) -> float | None:
        """Decide and propose once; returns when to look again without a commit."""
        inputs = await asyncio.to_thread(self._inputs)
        now = self._clock()
        decisions = evaluate(inputs.services, inputs.tasks, inputs.rows, now, self._max_age)
        self.decisions = decisions
        wakes = [d.wake_at for d in decisions if d.wake_at is not None]
        expiry = next_expiry(inputs.rows, now, self._max_age)
        if expiry is not None:
            wakes.append(expiry)
        for decision in decisions:
            if not decision.changes or not self._is_leader():
                continue
            service = inputs.services[decision.service]
            try:
                result = await self._propose(scale_command(decision, service, now))
            except Exception as exc:  # no quorum, lost leadership: look again shortly
                log.warning("autoscaler: scaling %s failed: %s", decision.service, exc)
                wakes.append(now + RETRY_DELAY)
                continue
            if result.ok:
                self.scaled += 1
                log.info("autoscaler: %s %s", decision.service, decision.reason)
            else:  # changed meanwhile (409): the commit that changed it wakes us again
                log.info("autoscaler: %s not scaled: %s", decision.service, result.error)
        return min(wakes, default=None)
