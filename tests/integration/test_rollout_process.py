"""Rolling updates on a real 3-node cluster with the process runtime: an update replaces the
tasks one batch at a time, `shoal service rollback` restores the old spec, an update to a
command that exits at once rolls back by itself; `service status` and the SSE event stream
show it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys

import pytest

from node.cli.rollout import parse_sse
from node.client import ApiError, Unreachable
from node.devcluster.localcluster import (
    EQUAL_PROCESS_NODES,
    LocalCluster,
    api_token_for,
    ca_for,
    started_cluster,
    wait_for,
)

pytestmark = pytest.mark.timeout(180)

SERVICE = {
    "name": "web",
    "image": "process",
    "command": ["sleep", "300"],
    "replicas": 3,
    "env": {"V": "1"},
    "restart": {"delay": "1s"},
    "update": {"parallelism": 1, "monitor": "1s", "failure_action": "rollback"},
    "rollback": {"parallelism": 2, "monitor": "1s"},
}


@pytest.fixture
async def trio(tmp_path):
    async with started_cluster(str(tmp_path), 3, EQUAL_PROCESS_NODES) as cluster:
        yield cluster


def shoal(command: str, *args: str, addr: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "node", *command.split(), "--addr", addr, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, SHOAL_TOKEN=api_token_for(addr), SHOAL_CA=ca_for(addr)),
    )


async def live(cluster: LocalCluster, i: int = 0) -> list[dict]:
    return [t for t in await cluster.get(i, "/v1/tasks?service=web") if t["desired"] == "running"]


async def settled(
    cluster: LocalCluster, version: int, state: str, runs: tuple[int, ...] = ()
) -> dict:
    """The service once its rollout to `version` ended in `state` and 3 tasks run, made from
    that version or the equal earlier ones in `runs` (a rollback keeps untouched tasks)."""
    service = await cluster.get(1, "/v1/services/web")
    rollout = service["rollout"]
    if service["version"] != version or not rollout or rollout["state"] != state:
        return {}
    tasks = await live(cluster, 1)
    ok = len(tasks) == 3 and all(
        t["state"] == "running" and t["spec_version"] in (version, *runs) for t in tasks
    )
    return service if ok else {}


async def collect_events(cluster: LocalCluster, into: list[dict]) -> None:
    """Follow the service's events as a watcher does: a node that cannot serve yet (it has
    not heard a leader: a 503) is asked again, resuming after the last event seen."""
    async with cluster.nodes[2].client() as client:
        while True:
            since = {"since": into[-1]["seq"]} if into and "seq" in into[-1] else {}
            try:
                async for _kind, data in parse_sse(
                    client.stream_lines("/v1/events", service="web", **since)
                ):
                    into.append(data)
            except (ApiError, Unreachable):
                await asyncio.sleep(0.2)


async def test_update_replaces_in_batches_and_rollback_restores_the_old_spec(trio):
    addr = trio.nodes[0].api
    events: list[dict] = []
    watcher = asyncio.ensure_future(collect_events(trio, events))
    try:
        async with trio.nodes[0].client() as client:
            await client.post("/v1/services", SERVICE)
            await wait_for(lambda: _all_running(trio, 1), 30, "3 tasks of version 1")
            done = shoal("service update web", "--env-add", "V=2", addr=addr)
            assert done.returncode == 0, done.stderr
            service = await wait_for(lambda: settled(trio, 2, "completed"), 60, "the update")
            assert service["spec"]["env"] == {"V": "2"}
            assert (service["rollout"]["updated"], service["rollout"]["failed"]) == (3, 0)
            new = sorted(await live(trio), key=lambda t: t["created_at"])
            # Parallelism 1: each successor was created only after the one before it ran.
            assert all(
                b["created_at"] >= a["started_at"] for a, b in zip(new, new[1:], strict=False)
            )
            old = [
                t for t in await client.get("/v1/tasks", service="web") if t["spec_version"] == 1
            ]
            assert len(old) == 3 and all(t["desired"] == "shutdown" for t in old)

            status = shoal("service status web", addr=addr)
            assert status.returncode == 0, status.stderr
            assert "3/3 updated" in status.stdout and "completed" in status.stdout
            assert "update of web completed: 3/3 updated" in status.stdout  # the events

            back = shoal("service rollback web", addr=addr)
            assert back.returncode == 0, back.stderr
            assert "rolling back to the spec of version 1" in back.stdout
            service = await wait_for(lambda: settled(trio, 3, "rolled_back"), 60, "the rollback")
            assert (
                service["spec"]["env"] == {"V": "1"} and service["rollout"]["reason"] == "requested"
            )
            again = shoal("service rollback web", "--to-version", "9", addr=addr)
            assert again.returncode != 0 and "not kept" in again.stderr
            with pytest.raises(ApiError) as bad:
                await client.post("/v1/services/web/rollback", {"to_version": "one"})
            assert (bad.value.status, bad.value.field) == (400, "to_version")
        await wait_for(lambda: _seen(events, "rolled_back"), 10, "the rollback's event")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    types = {e["type"] for e in events}
    assert {"service.created", "service.updated", "rollout", "task.created", "task.state"} <= types
    states = [e["state"] for e in events if e["type"] == "rollout"]
    assert states.index("completed") < states.index("rolling_back") < states.index("rolled_back")


async def test_an_update_to_a_command_that_exits_at_once_rolls_back_by_itself(trio):
    async with trio.nodes[0].client() as client:
        await client.post("/v1/services", SERVICE)
        await wait_for(lambda: _all_running(trio, 1), 30, "3 tasks of version 1")
        await client.patch("/v1/services/web", {"command": ["sh", "-c", "exit 3"]})
        service = await wait_for(
            lambda: settled(trio, 3, "rolled_back", runs=(1,)), 60, "the rollback"
        )
        versions = sorted(t["spec_version"] for t in await live(trio))
    assert versions == [1, 1, 3]  # only the failed slot was replaced, twice
    rollout = service["rollout"]
    assert service["spec"]["command"] == ["sleep", "300"] and rollout["kind"] == "rollback"
    assert rollout["reason"].startswith("update to version 2 failed: 1 of 3 replaced tasks failed")
    status = shoal("service status web", addr=trio.nodes[2].api)
    assert "rolled_back" in status.stdout and "update to version 2 failed" in status.stdout


async def _all_running(cluster: LocalCluster, version: int) -> bool:
    tasks = await live(cluster)
    return len(tasks) == 3 and all(
        t["state"] == "running" and t["spec_version"] == version for t in tasks
    )


async def _seen(events: list[dict], state: str) -> bool:
    return any(e["type"] == "rollout" and e["state"] == state for e in events)
