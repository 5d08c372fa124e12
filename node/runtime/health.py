"""Task health checks: the check's description, a pure state machine, probes and a runner.

The state machine follows Docker's HEALTHCHECK semantics so that a check behaves the same
whether Docker runs it (a cmd check in the docker runtime) or Shoal does: one success
makes a task healthy; `retries` consecutive failures make it unhealthy; failures inside the
start period do not count, but a success there already counts.

The runner is the thin shell: it probes on the check's interval and reports status changes
through a callback. Its owner (the agent's task group) cancels it when the task goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

# The same kinds as the service spec's check (consensus.services.HealthCheck), less "none".
CheckKind = Literal["http", "tcp", "cmd"]
HealthStatus = Literal["unknown", "starting", "healthy", "unhealthy"]

# Probe outputs and HTTP bodies are only kept to explain a failure; cap what is read.
_MAX_EXPLANATION = 200


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How to tell that a task is healthy.

    http: GET `path` on the task's published `port` (its target port; 0 = the task's first
    port) and expect a status from 200 to 399. tcp: connect to that port. cmd: run
    `command` (argv) and expect exit status 0. Durations are in seconds.
    """

    kind: CheckKind
    port: int = 0
    path: str = "/"
    command: tuple[str, ...] = ()
    interval: float = 10.0
    timeout: float = 5.0
    retries: int = 3
    start_period: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("http", "tcp", "cmd"):
            raise ValueError(f"kind: must be 'http', 'tcp' or 'cmd', not {self.kind!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: must be 0 (the first port) to 65535, not {self.port}")
        if self.kind == "http" and not self.path.startswith("/"):
            raise ValueError(f"path: must start with '/', not {self.path!r}")
        if self.kind == "cmd" and not self.command:
            raise ValueError("command: a cmd check needs a command to run")
        for name in ("interval", "timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be more than 0 seconds")
        if self.retries < 1:
            raise ValueError(f"retries: must be at least 1, not {self.retries}")
        if self.start_period < 0:
            raise ValueError("start_period: must not be negative")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HealthState:
    status: HealthStatus = "starting"
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    last_detail: str = ""


def observe(
    check: HealthCheck, state: HealthState, result: ProbeResult, since_start: float
) -> HealthState:
    """The state after one probe `since_start` seconds after the task started."""
    if result.ok:
        return HealthState("healthy", 0, state.consecutive_successes + 1, result.detail)
    if since_start < check.start_period and state.status == "starting":
        # Slow starters get their start period: failures there are not held against them.
        return dataclasses.replace(state, consecutive_successes=0, last_detail=result.detail)
    failures = state.consecutive_failures + 1
    status = "unhealthy" if failures >= check.retries else state.status
    return HealthState(status, failures, 0, result.detail)


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_EXPLANATION else text[:_MAX_EXPLANATION] + "..."


async def probe_tcp(host: str, port: int, timeout: float) -> ProbeResult:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return ProbeResult(False, f"tcp connect to {host}:{port} timed out after {timeout}s")
    except OSError as exc:
        return ProbeResult(False, f"tcp connect to {host}:{port} failed: {exc.strerror or exc}")
    writer.close()
    await writer.wait_closed()
    return ProbeResult(True, f"tcp connect to {host}:{port} succeeded")


async def _http_status_line(host: str, port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        # HTTP/1.0 with Connection: close keeps the probe free of keep-alive bookkeeping.
        writer.write(
            f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
            f"User-Agent: shoal-health\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()


async def probe_http(host: str, port: int, path: str, timeout: float) -> ProbeResult:
    url = f"http://{host}:{port}{path}"
    try:
        line = await asyncio.wait_for(_http_status_line(host, port, path), timeout)
    except TimeoutError:
        return ProbeResult(False, f"GET {url} timed out after {timeout}s")
    except OSError as exc:
        return ProbeResult(False, f"GET {url} failed: {exc.strerror or exc}")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return ProbeResult(False, f"GET {url} answered with no HTTP status line: {line[:80]!r}")
    code = int(parts[1])
    return ProbeResult(200 <= code < 400, f"GET {url} answered {code}")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


async def probe_command(
    argv: tuple[str, ...],
    timeout: float,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    run_as: Mapping[str, object] | None = None,
) -> ProbeResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            **(run_as or {}),
        )
    except OSError as exc:
        return ProbeResult(False, f"cannot run {argv[0]!r}: {exc.strerror or exc}")
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        return ProbeResult(False, f"command timed out after {timeout}s")
    finally:
        if proc.returncode is None:  # timed out or cancelled: leave no stray probe behind
            _kill_group(proc.pid)
            await proc.wait()
    text = _clip(output.decode(errors="replace"))
    if proc.returncode == 0:
        return ProbeResult(True, text)
    return ProbeResult(
        False,
        f"exit status {proc.returncode}: {text}" if text else f"exit status {proc.returncode}",
    )


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """Where a check probes: the task's published endpoint for the check's port, and the
    environment and directory that a cmd check runs with (the task's own)."""

    host: str = "127.0.0.1"
    port: int = 0
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    # Popen options for a cmd check: the task's user (see node.runtime.task_user).
    run_as: Mapping[str, object] = field(default_factory=dict)


def probe(check: HealthCheck, target: ProbeTarget) -> Awaitable[ProbeResult]:
    if check.kind == "http":
        return probe_http(target.host, target.port, check.path, check.timeout)
    if check.kind == "tcp":
        return probe_tcp(target.host, target.port, check.timeout)
    return probe_command(
        check.command, check.timeout, env=target.env, cwd=target.cwd, run_as=target.run_as
    )


async def run_health_check(
    check: HealthCheck,
    target: ProbeTarget,
    on_change: Callable[[HealthState], None],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Probe every `check.interval` seconds until cancelled, calling `on_change` whenever the
    status changes. Every task begins "starting", which is therefore never reported."""
    started = clock()
    state = HealthState()
    while True:
        result = await probe(check, target)
        new = observe(check, state, result, clock() - started)
        if new.status != state.status:
            on_change(new)
        state = new
        await asyncio.sleep(check.interval)
