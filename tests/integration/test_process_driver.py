"""The process runtime with real subprocesses: ports, stop, re-adoption, logs, limits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import urllib.request

import pytest

from node.runtime import PortSpec, ProcessDriver, RunSpec, select_driver
from node.runtime.cgroups import CgroupsV1
from node.runtime.process_records import load_record, save_record
from node.runtime.procfs import group_members, is_running
from node.runtime.select import RuntimeUnavailable

HTTP_SERVER = (
    "sh",
    "-c",
    f"echo serving on $PORT; exec {sys.executable} -m http.server $PORT --bind 127.0.0.1",
)


def web(task_id: str, slot: int = 1, **overrides) -> RunSpec:
    return RunSpec(
        **{
            "task_id": task_id,
            "service": "web",
            "slot": slot,
            "image": "",
            "command": HTTP_SERVER,
            "ports": (PortSpec(8000),),
            "stop_grace": 5,
            **overrides,
        }
    )


@pytest.fixture
def data_dir(tmp_path) -> str:
    return str(tmp_path / "data")


@pytest.fixture
async def driver(data_dir):
    driver = ProcessDriver(data_dir, node_id="node-a", stats_window=0.1)
    yield driver
    for seen in await driver.list_owned():
        await driver.remove(seen.task_id)


async def get(url: str) -> bytes:
    """GET with retries while the server is still binding its port."""
    for _ in range(100):
        try:
            return await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered")


async def until_logged(driver: ProcessDriver, task_id: str, text: bytes) -> None:
    seen = b""
    async with contextlib.aclosing(driver.logs(task_id, follow=True)) as chunks:
        async for chunk in chunks:
            seen += chunk
            if text in seen:
                return
    raise AssertionError(f"{task_id} ended without logging {text!r}: {seen!r}")


async def test_two_replicas_get_their_own_ports_and_both_answer(driver):
    first = await driver.start(web("t1", 1))
    second = await driver.start(web("t2", 2))
    assert first.state == second.state == "running"
    (a,), (b,) = first.endpoints, second.endpoints
    assert a.port != b.port and a.target == b.target == 8000
    for ep in (a, b):
        assert b"Directory listing" in await get(f"http://{ep.host}:{ep.port}/")
    assert sorted(o.task_id for o in await driver.list_owned()) == ["t1", "t2"]


async def test_starting_twice_keeps_one_process(driver):
    first = await driver.start(web("t1"))
    again = await driver.start(web("t1"))
    assert again.endpoints == first.endpoints and again.started_at == first.started_at
    assert len(await driver.list_owned()) == 1


async def test_stop_sends_sigterm_then_kills_after_the_grace(driver, data_dir):
    polite = await driver.start(web("polite"))
    await driver.start(
        RunSpec(
            "stubborn",
            "web",
            2,
            "",
            command=("sh", "-c", "trap '' TERM; echo ready; sleep 60 & wait"),
        )
    )
    await get(f"http://127.0.0.1:{polite.endpoint(8000).port}/")
    await until_logged(driver, "stubborn", b"ready")  # its trap is set
    stopped = await driver.stop("polite", 10)
    assert (stopped.state, stopped.exit_code, stopped.error) == ("failed", 143, "killed by SIGTERM")
    killed = await driver.stop("stubborn", 0.3)
    assert (killed.state, killed.exit_code) == ("failed", 137)
    # The shell's background sleep died with it: nothing of the task is left.
    assert group_members(load_record(data_dir, "stubborn").pid) == []


async def test_stop_sends_the_services_stop_signal(driver):
    from consensus.container import ContainerOptions

    await driver.start(
        RunSpec(
            "quitter",
            "web",
            1,
            "",
            options=ContainerOptions(stop_signal="SIGUSR1"),
            command=(
                "sh",
                "-c",
                "trap 'echo got usr1; exit 3' USR1; trap '' TERM; echo ready; "
                "while :; do sleep 0.1; done",
            ),
        )
    )
    await until_logged(driver, "quitter", b"ready")
    stopped = await driver.stop("quitter", 5)
    assert (stopped.state, stopped.exit_code) == ("failed", 3)
    await until_logged(driver, "quitter", b"got usr1")


async def test_exit_statuses_and_wait(driver):
    await driver.start(RunSpec("ok", "job", 0, "", command=("true",)))
    await driver.start(RunSpec("bad", "job", 1, "", command=("sh", "-c", "exit 3")))
    assert (await driver.wait("ok")).state == "exited"
    bad = await driver.wait("bad")
    assert (bad.state, bad.exit_code, bad.error) == ("failed", 3, "exited with status 3")
    assert (await driver.wait("unknown")).state == "missing"


async def test_wait_returns_when_a_running_task_ends(driver):
    await driver.start(web("t1"))
    waiter = asyncio.ensure_future(driver.wait("t1"))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await driver.stop("t1", 5)
    assert (await asyncio.wait_for(waiter, 30)).state == "failed"


async def test_a_fresh_driver_adopts_running_tasks_without_duplicates(driver, data_dir):
    started = await driver.start(web("t1"))
    await get(f"http://127.0.0.1:{started.endpoint(8000).port}/")
    await driver.aclose()

    restarted = ProcessDriver(data_dir, node_id="node-a")
    (adopted,) = await restarted.list_owned()
    assert (adopted.task_id, adopted.service, adopted.slot, adopted.state) == (
        "t1",
        "web",
        1,
        "running",
    )
    assert adopted.endpoints == started.endpoints
    again = await restarted.start(web("t1"))  # the agent converging: no second process
    assert again.started_at == started.started_at
    waiter = asyncio.ensure_future(restarted.wait("t1"))
    stopped = await restarted.stop("t1", 5)
    assert stopped.state == "failed" and "exit status unknown" in stopped.error
    assert (await asyncio.wait_for(waiter, 30)).state == "failed"


async def test_a_reused_pid_is_neither_adopted_nor_signalled(driver, data_dir):
    await driver.start(web("t1"))
    record = load_record(data_dir, "t1")
    # As if the task had died and its pid gone to a process started later.
    save_record(data_dir, dataclasses.replace(record, start_ticks=record.start_ticks - 1))
    restarted = ProcessDriver(data_dir)
    (seen,) = await restarted.list_owned()
    assert seen.state == "failed"
    await restarted.remove("t1")
    assert is_running(record.pid, record.start_ticks)  # the stranger was left alone
    os.killpg(record.pid, signal.SIGKILL)
    os.waitpid(record.pid, 0)


async def test_logs_tail_and_follow(driver):
    spec = RunSpec(
        "chatty",
        "job",
        0,
        "",
        command=(
            "sh",
            "-c",
            "for i in 1 2 3; do echo out $i; echo err $i >&2; done; exec sleep 30",
        ),
    )
    await driver.start(spec)
    follow = driver.logs("chatty", follow=True, tail=2)
    seen = await asyncio.wait_for(follow.__anext__(), 30)
    while seen.count(b"\n") < 2:
        seen += await asyncio.wait_for(follow.__anext__(), 30)
    assert seen == b"out 3\nerr 3\n"
    await follow.aclose()
    everything = b"".join([c async for c in driver.logs("chatty")])
    assert everything == b"out 1\nerr 1\nout 2\nerr 2\nout 3\nerr 3\n"
    assert [c async for c in driver.logs("nope")] == []


async def test_stats_of_a_running_task(driver):
    await driver.start(
        RunSpec(
            "busy",
            "job",
            0,
            "",
            memory_bytes=256 << 20,
            command=(sys.executable, "-c", "x = bytearray(64 << 20)\nwhile True: pass"),
        )
    )
    stats = None
    for _ in range(50):
        stats = await driver.stats("busy")
        if stats.memory_bytes >= 64 << 20 and stats.cpu_percent > 0:
            break
    assert stats.memory_bytes >= 64 << 20 and stats.cpu_percent > 0
    assert stats.memory_limit_bytes == 256 << 20
    await driver.stop("busy", 1)
    assert await driver.stats("busy") is None


async def test_images_and_unknown_commands_fail_clearly(driver):
    image = await driver.start(RunSpec("img", "web", 0, "nginx:1"))
    assert image.state == "failed" and "runs commands, not images" in image.error
    assert (await driver.inspect("img")).error == image.error
    unknown = await driver.start(RunSpec("cmd", "web", 0, "", command=("no-such-tool-here",)))
    assert unknown.state == "failed" and "'no-such-tool-here' not found" in unknown.error
    await driver.remove("img")
    assert (await driver.inspect("img")).state == "missing"


async def test_memory_limit_is_enforced_where_cgroups_are_writable(driver):
    problem = CgroupsV1().problem()
    if problem is not None:
        pytest.skip(f"cgroup v1 is not writable here: {problem}")
    await driver.start(
        RunSpec(
            "hog",
            "job",
            0,
            "",
            memory_bytes=32 << 20,
            command=(sys.executable, "-c", "x = [bytearray(1 << 20) for _ in range(200)]"),
        )
    )
    ended = await asyncio.wait_for(driver.wait("hog"), 60)
    assert (ended.state, ended.exit_code) == ("failed", 137)
    assert ended.error == f"killed: out of memory (limit {32 << 20} bytes)"


async def test_auto_falls_back_to_processes_without_a_docker_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    chosen = await select_driver("auto", str(tmp_path), node_id="n", docker_timeout=5)
    assert isinstance(chosen, ProcessDriver)
    with pytest.raises(RuntimeUnavailable):
        await select_driver("docker", str(tmp_path), node_id="n", docker_timeout=5)


async def test_select_driver_process(tmp_path):
    chosen = await select_driver("process", str(tmp_path), node_id="n")
    assert isinstance(chosen, ProcessDriver) and (await chosen.fingerprint()).runtime == "process"
    with pytest.raises(ValueError, match="runtime"):
        await select_driver("podman", str(tmp_path), node_id="n")  # type: ignore[arg-type]
