"""Drain before stop, with the real process driver and the real state machine: a task with
ports told to shut down keeps serving for its service's stop delay while the agent goes on
with its other work, a node stopping does not wait for it, and a task without ports stops
at once."""

from __future__ import annotations

from consensus.tasks import AssignTasks, StopTask
from node.runtime.procfs import is_running
from tests.integration.agent_support import run_agent
from tests.integration.test_agent_process import agent_for, get, process_of, web

# Longer than any test may run: whatever stops before it did not wait for the drain.
FOREVER = "1h"


async def test_a_task_with_ports_keeps_serving_while_it_drains_and_the_agent_goes_on(
    source, data_dir
):
    await source.create_service(web(stop_delay=FOREVER))
    (old,) = await source.assign("web", 1)
    agent = agent_for(source, data_dir)
    async with run_agent(agent):
        await source.until(lambda s: s.task(old).state == "running")
        (binding,) = source.task(old).endpoint.ports
        await source.submit(AssignTasks(10.0, stop=(StopTask(old, "service scaled down"),)))
        (new,) = await source.assign("web", 2)
        # A pending stop is only a timer: the agent starts the replacement meanwhile.
        await source.until(lambda s: s.task(new).state == "running")
        assert agent.running_tasks()[old] == "retiring"
        assert source.task(old).state == "running"
        assert await get(binding.host_port) == 200
    # Cancelled as a stopping node cancels it, the agent did not wait out the drain; the task
    # runs on, and the agent of the restarted node retires it.
    assert is_running(*process_of(data_dir, old))


async def test_a_task_without_ports_stops_at_once(source, data_dir):
    await source.create_service(web(command=["sleep", "1000"], ports=[], stop_delay=FOREVER))
    (task_id,) = await source.assign("web", 1)
    agent = agent_for(source, data_dir)
    async with run_agent(agent):
        await source.until(lambda s: s.task(task_id).state == "running")
        process = process_of(data_dir, task_id)
        await source.submit(AssignTasks(10.0, stop=(StopTask(task_id, "service scaled down"),)))
        await source.until(lambda s: s.task(task_id).state == "shutdown")
    assert not is_running(*process)
