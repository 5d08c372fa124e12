"""Watching one running task's health: the agent's own probes, or the runtime's check.

A check the runtime runs itself (a Docker cmd check, or the image's HEALTHCHECK) is read
back with `inspect` on the check's cadence, since the driver seam offers no health events;
every other check runs here through `node.runtime.health.run_health_check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

from node.runtime.driver import Driver
from node.runtime.health import (
    HealthCheck,
    HealthState,
    HealthStatus,
    ProbeTarget,
    run_health_check,
)
from node.runtime.model import RunSpec, TaskObservation
from node.runtime.process_records import port_environment

# How often a check that only the runtime knows (an image's own HEALTHCHECK) is read back.
RUNTIME_CHECK_INTERVAL = 5.0

OnStatus = Callable[[HealthStatus], None]


def probe_target(
    check: HealthCheck, run: RunSpec, seen: TaskObservation, run_as: dict | None = None
) -> ProbeTarget:
    """Probe the published endpoint of the check's port; a task on an overlay network is
    probed at its address on its first network (this node reaches it through its bridge, and
    its unpublished ports have no host port); any other port is probed as is on the advertise
    address. A command check runs with the task's environment, host ports included, as the
    task itself sees them in the process runtime (and as its user, `run_as`)."""
    published = seen.endpoint(check.port)
    on_network = seen.networks.get(run.networks[0]) if run.networks else None
    if published is not None:
        host, port = published.host, published.port
    elif on_network and check.port:
        host, port = on_network, check.port
    else:
        host, port = run.advertise_address, check.port
    if host in ("", "0.0.0.0", "::"):
        host = run.advertise_address
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        **run.env,
        **port_environment(seen.endpoints),
    }
    return ProbeTarget(host, port, env, run_as=run_as or {})


def agent_runs(driver: Driver, run: RunSpec | None) -> bool:
    check = run.healthcheck if run is not None else None
    return check is not None and check.kind not in driver.native_health_checks


async def _probed(check: HealthCheck, target: ProbeTarget, on_status: OnStatus) -> str:
    verdict: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def changed(state: HealthState) -> None:
        on_status(state.status)
        if state.status == "unhealthy" and not verdict.done():
            verdict.set_result(state.last_detail or "no detail")

    probing = asyncio.ensure_future(run_health_check(check, target, changed))
    try:
        await asyncio.wait([probing, verdict], return_when=asyncio.FIRST_COMPLETED)
        if probing.done():
            probing.result()  # a probe that broke must surface, not hang the watch
        return verdict.result()
    finally:
        probing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probing


async def _read_back(
    driver: Driver, task_id: str, interval: float, status: HealthStatus, on_status: OnStatus
) -> str:
    while True:
        await asyncio.sleep(interval)
        seen = await driver.inspect(task_id)
        if seen.health != status:
            status = seen.health
            on_status(status)
        if status == "unhealthy":
            return "the runtime's health check reports it unhealthy"


def watch_health(
    driver: Driver, run: RunSpec | None, seen: TaskObservation, on_status: OnStatus
) -> Awaitable[str] | None:
    """An awaitable that reports every health change and returns why once the task turned
    unhealthy; None when nothing checks this task's health."""
    check = run.healthcheck if run is not None else None
    if run is not None and check is not None and agent_runs(driver, run):
        return _probed(check, probe_target(check, run, seen, driver.command_options), on_status)
    if seen.health != "unknown":
        interval = check.interval if check is not None else RUNTIME_CHECK_INTERVAL
        return _read_back(driver, seen.task_id, interval, seen.health, on_status)
    return None
