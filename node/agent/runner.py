"""One task on this node, from its start to its removal.

A runner is the only code that calls the driver about its task, so a stop can never race a
start: the agent asks it to retire and it does so once its start has returned. Whatever it
observes becomes a report; a driver error ends the task (reported failed), never the agent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from consensus.tasks import TaskReport
from node.agent.health_watch import agent_runs, watch_health
from node.agent.plan import Phase, Retire
from node.agent.secret_fetch import FillFiles
from node.agent.translate import observed, task_health
from node.runtime.driver import Driver
from node.runtime.health import HealthStatus
from node.runtime.model import RunSpec, TaskObservation

log = logging.getLogger(__name__)

# Waits (within its own bound) until this node has made the runtime networks named.
NetworksReady = Callable[[tuple[str, ...]], Awaitable[None]]

# Stop grace for a task whose spec is unknown (adopted, and gone from the state).
DEFAULT_GRACE = 10.0
# Wait before trying again to remove a task the runtime failed to remove.
RETRY_DELAY = 2.0


async def first_of(contenders: dict[str, Awaitable[Any]]) -> tuple[str, Any]:
    """Run the awaitables until one finishes; its name (the first in order when several
    finished together) and result. The others are cancelled and awaited."""
    futures = {asyncio.ensure_future(aw): name for name, aw in contenders.items()}
    try:
        done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
        winner = next(f for f in futures if f in done)
        return futures[winner], winner.result()
    finally:
        for future in futures:
            future.cancel()
        await asyncio.gather(*futures, return_exceptions=True)


def describe_end(seen: TaskObservation) -> str:
    """The exit code and error of a task that ended, for a log line."""
    parts = [f"exit code {seen.exit_code}" if seen.exit_code is not None else "", seen.error]
    said = ", ".join(p for p in parts if p)
    return f" ({said})" if said else ""


class TaskRunner:
    """`run` is None for a task found running that no assignment wants: it is only watched
    until the agent retires it. `adopted` is what the driver had when the agent started."""

    def __init__(
        self,
        task_id: str,
        *,
        driver: Driver,
        slots: asyncio.Semaphore,
        report: Callable[[TaskReport], None],
        advertise: str,
        run: RunSpec | None = None,
        adopted: TaskObservation | None = None,
        fill_files: FillFiles | None = None,
        retry_delay: float = RETRY_DELAY,
        networks_ready: NetworksReady | None = None,
    ) -> None:
        assert run is not None or adopted is not None, "a runner needs a task to start or adopt"
        self.task_id = task_id
        self.run_spec = run
        self._driver = driver
        self._slots = slots
        self._report = report
        self._advertise = advertise
        self._adopted = adopted
        self._fill_files = fill_files
        self._networks_ready = networks_ready
        self._retry_delay = retry_delay
        self._phase: Phase = (
            "starting" if adopted is None else "running" if adopted.alive else "ended"
        )
        self._retire: Retire | None = None
        self._retired = asyncio.Event()

    @property
    def phase(self) -> Phase:
        return "retiring" if self._retire is not None else self._phase

    def retire(self, request: Retire) -> None:
        """Stop the task (if it runs), remove it, then send the request's report."""
        if self._retire is None:
            self._retire = request
            self._retired.set()

    async def run(self) -> None:
        still_running = False
        try:
            still_running = await self._live()
        except Exception as exc:
            log.warning("agent: task %s: runtime error: %s", self.task_id, exc)
            if self.run_spec is not None:
                self._report(TaskReport(self.task_id, "failed", error=f"runtime error: {exc}"))
        self._phase = "ended"
        await self._retired.wait()
        await self._finish(still_running)

    # -- living ------------------------------------------------------------------------
    async def _live(self) -> bool:
        """Start (or adopt) and watch the task; True when it was retired while running."""
        if self._adopted is not None:
            seen = self._adopted
        else:
            assert self.run_spec is not None
            run = self.run_spec
            if run.networks and self._networks_ready is not None:
                # The node makes a network's runtime side when the network is committed; a
                # task assigned at once must not race it (its start would find no network).
                await self._networks_ready(run.networks)
            if run.files and self._fill_files is not None:
                # Fetched at the last moment, kept only in this start's RunSpec.
                run = await self._fill_files(run)
            async with self._slots:
                seen = await self._driver.start(run)
            log.info(
                "agent: task %s (%s.%d): %s%s",
                self.task_id,
                run.service,
                run.slot,
                seen.state,
                describe_end(seen),
            )
        if self.run_spec is not None:
            first = observed(seen, self._advertise)
            if seen.alive and first.health is None and agent_runs(self._driver, self.run_spec):
                first = dataclasses.replace(first, health="starting")
            self._report(first)
        if not seen.alive:
            return False
        self._phase = "running"
        return await self._watch(seen)

    async def _watch(self, seen: TaskObservation) -> bool:
        contenders: dict[str, Awaitable[Any]] = {"retired": self._retired.wait()}
        health = watch_health(self._driver, self.run_spec, seen, self._health_changed)
        if health is not None:
            contenders["unhealthy"] = health
        contenders["ended"] = self._driver.wait(self.task_id)
        outcome, value = await first_of(contenders)
        if outcome == "retired":
            return True
        if outcome == "ended":
            log.info("agent: task %s: %s%s", self.task_id, value.state, describe_end(value))
            if self.run_spec is not None:
                self._report(observed(value, self._advertise))
            return False
        # Unhealthy: stop it and say why; the scheduler replaces it per its restart policy.
        log.info("agent: task %s: health check failed, stopping it: %s", self.task_id, value)
        async with self._slots:
            stopped = await self._driver.stop(self.task_id, self._grace(None))
        self._report(
            TaskReport(
                self.task_id,
                "failed",
                error=f"health check failed: {value}",
                exit_code=stopped.exit_code,
            )
        )
        return False

    def _health_changed(self, status: HealthStatus) -> None:
        if self.run_spec is not None:
            self._report(TaskReport(self.task_id, "running", health=task_health(status)))

    # -- retiring ----------------------------------------------------------------------
    def _grace(self, requested: float | None) -> float:
        if requested is not None:
            return requested
        return self.run_spec.stop_grace if self.run_spec is not None else DEFAULT_GRACE

    async def _finish(self, still_running: bool) -> None:
        request = self._retire
        assert request is not None
        if still_running and request.drain > 0:
            # Its endpoints are already withdrawn; the load balancers that still send it new
            # connections stop within the drain. A timer in this task's own coroutine: the
            # agent converges the others meanwhile, and a node stopping cancels it (the task
            # keeps running and is retired again once the node is back).
            log.info("agent: task %s: draining %.1f s before its stop", self.task_id, request.drain)
            await asyncio.sleep(request.drain)
        while True:
            try:
                async with self._slots:
                    if still_running:
                        await self._driver.stop(self.task_id, self._grace(request.grace))
                    await self._driver.remove(self.task_id)
                break
            except Exception as exc:  # the runtime is down or busy: an orphan is worse
                log.warning("agent: removing task %s failed, retrying: %s", self.task_id, exc)
                await asyncio.sleep(self._retry_delay)
        if request.report is not None:
            self._report(request.report)
