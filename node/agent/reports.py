"""Batching what the agent observes into one `ReportTaskStatus` per interval.

`PendingReports` is the pure part. It keeps each task's transitions in order and folds a
report into the previous one when both carry the same state, so a batch commits exactly what
the reports one by one would have (a task that ran and failed between two batches still gets
its start time), while a health flap or a retried batch adds no entries.
`ReportSender` is the shell: it sends what is pending, at most once per interval, and keeps a
batch that could not be committed to merge it under newer reports for the next try.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from consensus.state import Result
from consensus.tasks import ReportTaskStatus, TaskReport, merge_reports

log = logging.getLogger(__name__)


class PendingReports:
    def __init__(self) -> None:
        self._by_task: dict[str, list[TaskReport]] = {}

    def __len__(self) -> int:
        return sum(len(steps) for steps in self._by_task.values())

    def add(self, report: TaskReport) -> None:
        steps = self._by_task.setdefault(report.task_id, [])
        if steps and steps[-1].state == report.state:
            steps[-1] = merge_reports(steps[-1], report)
        else:
            steps.append(report)

    def take(self) -> tuple[TaskReport, ...]:
        """Everything pending, each task's reports in the order observed; empties the queue."""
        batch = tuple(r for steps in self._by_task.values() for r in steps)
        self._by_task.clear()
        return batch

    def restore(self, batch: Iterable[TaskReport]) -> None:
        """Put back a batch that was not committed, under what was observed since."""
        newer = self.take()
        for report in (*batch, *newer):
            self.add(report)


class ReportSender:
    """Sends pending reports as one command, then waits `interval` before the next, so a node
    proposes at most one report per interval however many tasks change."""

    def __init__(
        self,
        node_id: str,
        submit: Callable[[Any], Awaitable[Result]],
        *,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._node_id = node_id
        self._submit = submit
        self._interval = interval
        self._clock = clock
        self._pending = PendingReports()
        self._ready = asyncio.Event()

    def add(self, report: TaskReport) -> None:
        self._pending.add(report)
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch = self._pending.take()
            await self._send(batch)
            # A rate limit, not a poll: reports arriving meanwhile wait and go out together.
            await asyncio.sleep(self._interval)

    async def _send(self, batch: tuple[TaskReport, ...]) -> None:
        try:
            result = await self._submit(ReportTaskStatus(self._node_id, self._clock(), batch))
        except Exception as exc:  # no quorum, leader lost, unreachable: keep them and retry
            log.info("agent: %d task reports not committed, retrying: %s", len(batch), exc)
            self._pending.restore(batch)
            self._ready.set()
            return
        if not result.ok:
            log.warning("agent: task reports refused: %s", result.error)
            return
        for task_id, reason in (result.value or {}).get("rejected", ()):
            # Expected after a task was removed or moved on; nothing to retry.
            log.debug("agent: report for task %s rejected: %s", task_id, reason)
