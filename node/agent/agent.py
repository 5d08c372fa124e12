"""The node agent: makes the tasks assigned to this node run here, and tells the cluster
what it sees.

Level-triggered and idempotent: on every committed change it compares the assignments with
its runners (`plan.decide`) and starts or retires the difference; it never acts on the change
itself. A commit that left this node's tasks, the services and its runners as they were (one
about other nodes) decides nothing: each version shares the index groups and tables a commit
did not touch with the one before, so that is a comparison of references. On start it re-adopts whatever the driver already runs for this node, so a restarted
agent starts no duplicate and leaves no orphan. Restarts are the scheduler's decision: a task
that ends or turns unhealthy is reported, and the scheduler replaces it per its policy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from consensus.state import Result
from consensus.store import StateVersion
from consensus.tasks import TaskReport
from node.agent.plan import Assigned, Planner, assigned_to
from node.agent.reports import ReportSender
from node.agent.runner import RETRY_DELAY, NetworksReady, TaskRunner
from node.agent.secret_fetch import FillFiles
from node.agent.translate import TranslateError, run_spec
from node.overlay.view import Seat
from node.runtime.driver import Driver
from node.runtime.model import RunSpec, TaskObservation

log = logging.getLogger(__name__)

# Starts and stops under way at once: a wave of assignments must not fork 100 containers
# at the same instant, nor may one slow stop hold up every start.
MAX_PARALLEL = 8


class Agent:
    """`read_state` returns the current version of the replicated state; `changed` is set by the
    node after every committed change and cleared here; `submit` commits a command through
    Raft from any node, raising when there is no quorum."""

    def __init__(
        self,
        *,
        node_id: str,
        driver: Driver,
        read_state: Callable[[], StateVersion],
        changed: asyncio.Event,
        submit: Callable[[Any], Awaitable[Result]],
        advertise: str,
        dns_servers: tuple[str, ...] = (),
        fill_files: FillFiles | None = None,
        seats: Callable[[StateVersion], Mapping[str, Seat]] | None = None,
        networks_ready: NetworksReady | None = None,
        report_interval: float = 0.5,
        max_parallel: int = MAX_PARALLEL,
    ) -> None:
        self.node_id = node_id
        self.driver = driver
        self.advertise = advertise
        self.dns_servers = dns_servers
        # This node's place in each overlay network; None: it takes part in none.
        self._seats = seats
        self._networks_ready = networks_ready
        # Fetches the content of a task's secrets and configs just before it starts.
        self._fill_files = fill_files
        self._read_state = read_state
        self._changed = changed
        self._reports = ReportSender(node_id, submit, interval=report_interval)
        self._slots = asyncio.Semaphore(max_parallel)
        self._runners: dict[str, TaskRunner] = {}
        self._group: asyncio.TaskGroup | None = None
        self._observers: list[Callable[[TaskReport], None]] = []
        self.planner = Planner(node_id)

    def on_report(self, observer: Callable[[TaskReport], None]) -> Callable[[], None]:
        """Call `observer(report)` with every observation as it is made, before it waits for
        its batch: the routing mesh withdraws a failed task's endpoint at once. Returns an
        unsubscribe."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def _report(self, report: TaskReport) -> None:
        self._reports.add(report)
        for observer in list(self._observers):
            observer(report)

    def running_tasks(self) -> dict[str, str]:
        """The tasks this agent holds, with their phases: for status pages and tests."""
        return {task_id: runner.phase for task_id, runner in self._runners.items()}

    async def run(self) -> None:
        """Adopt, then converge on every change until cancelled. Tasks keep running."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self._reports.run())
            await self._adopt()
            while True:
                self._changed.clear()
                self._converge()
                await self._changed.wait()

    def _assignments(self) -> dict[str, Assigned]:
        with self._read_state() as state:
            return assigned_to(state, self.node_id)

    def _run_spec(self, entry: Assigned) -> RunSpec:
        seats: Mapping[str, Seat] | None = None
        if self._seats is not None:
            seats = {}
            if entry.spec is not None and entry.spec.networks:
                with self._read_state() as state:
                    seats = self._seats(state)
        return run_spec(entry.task, entry.spec, self.advertise, self.dns_servers, seats)

    async def _adopt(self) -> None:
        while True:
            try:
                owned = await self.driver.list_owned()
                break
            except Exception as exc:  # the runtime is not up yet: adopting blind would duplicate
                log.warning("agent: cannot list this node's tasks, retrying: %s", exc)
                await asyncio.sleep(RETRY_DELAY)
        assigned = self._assignments()
        for seen in owned:
            entry = assigned.get(seen.task_id)
            run = self._wanted_spec(entry)
            self._spawn(seen.task_id, run, seen)
        log.info("agent: adopted %d task(s) on node %s", len(owned), self.node_id)

    def _wanted_spec(self, entry: Assigned | None) -> RunSpec | None:
        """The run spec of an adopted task that should keep running here, else None."""
        if entry is None or entry.task.desired != "running":
            return None
        try:
            return self._run_spec(entry)
        except TranslateError:
            return None  # it cannot run as specified: it is watched until it is retired

    def _converge(self) -> None:
        with self._read_state() as state:
            decision = self.planner.decide(state, self.running_tasks())
        if decision is None:
            return  # the commits since were about other nodes: the last decision stands
        for report in decision.reports:
            self._report(report)
        for entry in decision.start:
            try:
                run = self._run_spec(entry)
            except TranslateError as exc:
                self._report(TaskReport(entry.task.id, "rejected", error=str(exc)))
                continue
            self._spawn(entry.task.id, run, None)
        for request in decision.retire:
            self._runners[request.task_id].retire(request)

    def _spawn(self, task_id: str, run: RunSpec | None, adopted: TaskObservation | None) -> None:
        assert self._group is not None
        runner = TaskRunner(
            task_id,
            driver=self.driver,
            slots=self._slots,
            report=self._report,
            advertise=self.advertise,
            run=run,
            adopted=adopted,
            fill_files=self._fill_files,
            networks_ready=self._networks_ready,
        )
        self._runners[task_id] = runner
        task = self._group.create_task(runner.run(), name=f"shoal-task-{task_id}")
        task.add_done_callback(lambda _: self._forget(runner))

    def _forget(self, runner: TaskRunner) -> None:
        if self._runners.get(runner.task_id) is runner:
            del self._runners[runner.task_id]
