"""The agent with the real process driver and the real state machine: tasks assigned through
the real commands start, are reported with their endpoints and health, fail, shut down, and
are re-adopted by a restarted agent without duplicates or orphans."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import urllib.request

from consensus.model import Node, Resources
from consensus.nodes import RegisterNode
from consensus.tasks import (
    Assignment,
    AssignTasks,
    ReportTaskStatus,
    StopTask,
    Task,
    TaskReport,
    services,
)
from node.agent import Agent
from node.runtime import ProcessDriver, RunSpec
from node.runtime.process_records import load_record
from node.runtime.procfs import is_running
from tests.integration.agent_support import NODE, StateSource, eventually, run_agent

HTTP_SERVER = ["sh", "-c", f"exec {sys.executable} -m http.server $PORT --bind 127.0.0.1"]


def web(**plain) -> dict:
    return {
        "name": "web",
        "image": "process",
        "command": HTTP_SERVER,
        "ports": ["8080:8000"],
        "stop_grace_period": "5s",
        **plain,
    }


def agent_for(source: StateSource, data_dir: str) -> Agent:
    return Agent(
        node_id=NODE,
        driver=ProcessDriver(data_dir, node_id=NODE),
        read_state=source.read,
        changed=source.changed,
        submit=source.submit,
        advertise="127.0.0.1",
        report_interval=0.05,
    )


async def get(port: int) -> int:
    """GET / on the task's host port, with retries while the server is still binding it."""

    def fetch() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            return answer.status

    for _ in range(100):
        with contextlib.suppress(OSError):
            return await asyncio.to_thread(fetch)
        await asyncio.sleep(0.1)
    raise AssertionError(f"nothing answers on port {port}")


def process_of(data_dir: str, task_id: str) -> tuple[int, int]:
    """The task's pid and start time: together they name one process, even after pid reuse."""
    record = load_record(data_dir, task_id)
    assert record is not None
    return record.pid, record.start_ticks


async def test_two_replicas_run_on_their_own_ports_and_turn_healthy(source, data_dir):
    await source.create_service(
        web(replicas=2, health={"kind": "http", "path": "/", "interval": "0.2s", "timeout": "2s"})
    )
    a, b = await source.assign("web", 1, 2)
    async with run_agent(agent_for(source, data_dir)):
        await source.until(lambda s: all(s.task(t).health == "healthy" for t in (a, b)))
    ta, tb = source.task(a), source.task(b)
    assert ta.state == tb.state == "running" and ta.started_at > 0
    assert ta.endpoint.address == tb.endpoint.address == "127.0.0.1"
    (pa,), (pb,) = ta.endpoint.ports, tb.endpoint.ports
    assert pa.target == pb.target == 8000 and pa.host_port != pb.host_port
    assert await get(pa.host_port) == await get(pb.host_port) == 200


async def test_commits_about_other_nodes_decide_nothing_here_and_one_about_its_task_does(
    source, data_dir
):
    await source.create_service(web())
    (mine,) = await source.assign("web", 1)
    agent = agent_for(source, data_dir)
    async with run_agent(agent):
        await source.until(lambda s: s.task(mine).state == "running")
        await eventually(lambda: agent.running_tasks() == {mine: "running"})
        decided = agent.planner.decisions
        await source.submit(
            RegisterNode(
                Node(
                    "n2", "n2", "127.0.0.2", 7420, 7421, 7422, resources=Resources(64_000, 64 << 30)
                )
            )
        )
        service = services(source.state)["web"]
        other = Task("web-2-elsewhere", service.id, "web", 2, service.version)
        await source.submit(AssignTasks(3.0, create=(other,), assign=(Assignment(other.id, "n2"),)))
        await source.submit(ReportTaskStatus("n2", 4.0, (TaskReport(other.id, "running"),)))
        await asyncio.sleep(0.2)  # the agent has woken for each and looked
        assert agent.planner.decisions == decided
        await source.submit(AssignTasks(5.0, stop=(StopTask(mine, "scaled down"),)))
        await source.until(lambda s: s.task(mine).state == "shutdown")
        assert agent.planner.decisions > decided


async def test_a_killed_process_is_reported_failed_and_its_remains_kept(source, data_dir):
    await source.create_service(web())
    (task_id,) = await source.assign("web", 1)
    agent = agent_for(source, data_dir)
    async with run_agent(agent):
        await source.until(lambda s: s.task(task_id).state == "running")
        os.killpg(process_of(data_dir, task_id)[0], signal.SIGKILL)
        await source.until(lambda s: s.task(task_id).state == "failed")
        assert agent.running_tasks() == {task_id: "ended"}
    task = source.task(task_id)
    assert (task.exit_code, task.error) == (128 + signal.SIGKILL, "killed by SIGKILL")
    assert task.finished_at >= task.started_at > 0
    assert (await agent.driver.inspect(task_id)).state == "failed"  # logs stay readable


async def test_a_restarted_agent_adopts_its_tasks_and_removes_the_rest(source, data_dir):
    await source.create_service(web(replicas=2))
    keep, drop = await source.assign("web", 1, 2)
    async with run_agent(agent_for(source, data_dir)):
        await source.until(lambda s: {s.task(keep).state, s.task(drop).state} == {"running"})
    kept = process_of(data_dir, keep)
    port = source.task(keep).endpoint.ports[0].host_port
    # While no agent runs: one task is told to stop, and a process appears that no task wants.
    await source.submit(AssignTasks(10.0, stop=(StopTask(drop, "scaled down"),)))
    stray = ProcessDriver(data_dir, node_id=NODE)
    assert (await stray.start(RunSpec("ghost", "web", 9, "", command=("sleep", "600")))).alive

    restarted = agent_for(source, data_dir)
    async with run_agent(restarted):
        await source.until(lambda s: s.task(drop).state == "shutdown")
        await eventually(lambda: restarted.running_tasks() == {keep: "running"})
        owned = await restarted.driver.list_owned()
    assert [o.task_id for o in owned] == [keep]
    assert process_of(data_dir, keep) == kept and is_running(*kept)
    assert source.task(keep).state == "running" and await get(port) == 200
    assert source.task(drop).message == "scaled down"


async def test_a_task_told_to_shut_down_is_stopped_removed_and_reported(source, data_dir):
    await source.create_service(web())
    (task_id,) = await source.assign("web", 1)
    agent = agent_for(source, data_dir)
    async with run_agent(agent):
        await source.until(lambda s: s.task(task_id).state == "running")
        process = process_of(data_dir, task_id)
        await source.submit(AssignTasks(10.0, stop=(StopTask(task_id, "service scaled down"),)))
        await source.until(lambda s: s.task(task_id).state == "shutdown")
        assert agent.running_tasks() == {}
    assert not is_running(*process)
    assert await agent.driver.list_owned() == []
    assert source.task(task_id).message == "service scaled down"


async def test_a_failing_health_check_stops_the_task_and_fails_it(source, data_dir):
    await source.create_service(
        web(
            health={
                "kind": "http",
                "path": "/no-such-page",
                "interval": "0.2s",
                "timeout": "2s",
                "retries": 2,
            }
        )
    )
    (task_id,) = await source.assign("web", 1)
    agent = agent_for(source, data_dir)
    async with run_agent(agent):
        await source.until(lambda s: s.task(task_id).state == "failed")
    task = source.task(task_id)
    assert task.health == "unhealthy"
    (port,) = task.endpoint.ports
    # Refused while the server starts, or answered 404: either way the check failed.
    assert task.error.startswith(
        f"health check failed: GET http://127.0.0.1:{port.host_port}/no-such-page "
    )
    assert not (await agent.driver.inspect(task_id)).alive


async def test_a_task_that_cannot_run_as_specified_is_rejected(source, data_dir):
    await source.create_service(web(labels={"shoal.node": "elsewhere"}))
    (task_id,) = await source.assign("web", 1)
    async with run_agent(agent_for(source, data_dir)):
        await source.until(lambda s: s.task(task_id).state == "rejected")
    assert source.task(task_id).error == "labels.shoal.node: the 'shoal.' prefix is reserved"
    assert not os.path.exists(os.path.join(data_dir, "tasks", task_id))
