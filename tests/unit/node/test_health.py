"""Health checks: the pure state machine, and probes against real sockets and processes."""

from __future__ import annotations

import asyncio
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.health import (
    HealthCheck,
    HealthState,
    ProbeResult,
    ProbeTarget,
    observe,
    probe,
    run_health_check,
)

OK, FAIL = ProbeResult(True), ProbeResult(False, "refused")


def run(check: HealthCheck, results: list[tuple[bool, float]]) -> list[str]:
    state, statuses = HealthState(), []
    for ok, at in results:
        state = observe(check, state, OK if ok else FAIL, at)
        statuses.append(state.status)
    return statuses


@pytest.mark.parametrize(
    "retries, start_period, results, expected",
    [
        (3, 0, [(True, 1)], ["healthy"]),
        (3, 0, [(False, 1), (False, 2), (False, 3)], ["starting", "starting", "unhealthy"]),
        (1, 0, [(False, 1)], ["unhealthy"]),
        # A success resets the count: failures must be consecutive.
        (
            2,
            0,
            [(True, 1), (False, 2), (True, 3), (False, 4), (False, 5)],
            ["healthy", "healthy", "healthy", "healthy", "unhealthy"],
        ),
        # Failures in the start period do not count...
        (1, 10, [(False, 1), (False, 5), (False, 11)], ["starting", "starting", "unhealthy"]),
        # ...but a success there does, and then failures count even inside it.
        (1, 10, [(True, 1), (False, 2)], ["healthy", "unhealthy"]),
        (
            3,
            0,
            [(False, 1), (False, 2), (False, 3), (True, 4)],
            ["starting", "starting", "unhealthy", "healthy"],
        ),
    ],
)
def test_state_machine_table(retries, start_period, results, expected):
    check = HealthCheck("tcp", retries=retries, start_period=start_period)
    assert run(check, results) == expected


@given(st.integers(1, 5), st.lists(st.booleans(), max_size=40))
def test_unhealthy_exactly_after_retries_consecutive_failures(retries, outcomes):
    check = HealthCheck("tcp", retries=retries)
    statuses = run(check, [(ok, 100.0 + i) for i, ok in enumerate(outcomes)])
    for i, status in enumerate(statuses):
        window = outcomes[max(0, i - retries + 1) : i + 1]
        if outcomes[i]:
            assert status == "healthy"
        elif len(window) == retries and not any(window):
            assert status == "unhealthy"
        else:
            assert status == (statuses[i - 1] if i else "starting")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"kind": "grpc"}, "kind"),
        ({"kind": "http", "path": "health"}, "path"),
        ({"kind": "cmd"}, "command"),
        ({"kind": "tcp", "interval": 0}, "interval"),
        ({"kind": "tcp", "timeout": -1}, "timeout"),
        ({"kind": "tcp", "retries": 0}, "retries"),
        ({"kind": "tcp", "start_period": -1}, "start_period"),
        ({"kind": "tcp", "port": 70000}, "port"),
    ],
)
def test_check_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        HealthCheck(**kwargs)


async def serve(handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def http_answer(status_line: bytes):
    async def handle(reader, writer):
        request = await reader.readuntil(b"\r\n\r\n")
        writer.write(
            status_line + b"\r\nContent-Length: 0\r\n\r\n"
            if request.startswith(b"GET /h ")
            else b"HTTP/1.0 404 Not Found\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    return handle


@pytest.mark.parametrize(
    "status_line, ok",
    [
        (b"HTTP/1.1 200 OK", True),
        (b"HTTP/1.1 302 Found", True),
        (b"HTTP/1.1 500 Internal Server Error", False),
        (b"garbage", False),
    ],
)
async def test_http_probe_reads_the_status(status_line, ok):
    server, port = await serve(http_answer(status_line))
    async with server:
        result = await probe(
            HealthCheck("http", path="/h", timeout=5), ProbeTarget("127.0.0.1", port)
        )
    assert result.ok is ok, result
    assert str(port) in result.detail


async def test_http_probe_times_out_on_a_silent_server():
    async def silent(reader, writer):
        await reader.read()  # never answers

    server, port = await serve(silent)
    async with server:
        result = await probe(HealthCheck("http", timeout=0.2), ProbeTarget("127.0.0.1", port))
    assert not result.ok and "timed out" in result.detail


async def test_tcp_probe_open_and_closed_port():
    server, port = await serve(lambda r, w: w.close())
    async with server:
        assert (await probe(HealthCheck("tcp"), ProbeTarget("127.0.0.1", port))).ok
    closed = await probe(HealthCheck("tcp"), ProbeTarget("127.0.0.1", port))
    assert not closed.ok and "failed" in closed.detail


async def test_command_probe_exit_status_env_and_timeout(tmp_path):
    check = HealthCheck("cmd", command=("sh", "-c", 'test "$X" = yes && pwd'))
    good = await probe(
        check, ProbeTarget(env={"X": "yes", "PATH": "/usr/bin:/bin"}, cwd=str(tmp_path))
    )
    assert good.ok and good.detail == str(tmp_path)
    bad = await probe(check, ProbeTarget(env={"X": "no", "PATH": "/usr/bin:/bin"}))
    assert not bad.ok and bad.detail == "exit status 1"
    slow = await probe(
        HealthCheck(
            "cmd", command=(sys.executable, "-c", "import time; time.sleep(30)"), timeout=0.2
        ),
        ProbeTarget(),
    )
    assert not slow.ok and "timed out" in slow.detail
    missing = await probe(HealthCheck("cmd", command=("/no/such/tool",)), ProbeTarget())
    assert not missing.ok and "cannot run" in missing.detail


async def test_runner_reports_changes_as_the_endpoint_comes_and_goes():
    changes: asyncio.Queue[HealthState] = asyncio.Queue()
    server, port = await serve(lambda r, w: w.close())
    check = HealthCheck("tcp", interval=0.05, timeout=1, retries=2)
    runner = asyncio.ensure_future(
        run_health_check(check, ProbeTarget("127.0.0.1", port), changes.put_nowait)
    )
    try:
        assert (await asyncio.wait_for(changes.get(), 30)).status == "healthy"
        server.close()
        await server.wait_closed()
        unhealthy = await asyncio.wait_for(changes.get(), 30)
        assert unhealthy.status == "unhealthy" and unhealthy.consecutive_failures == 2
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
