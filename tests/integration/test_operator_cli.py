"""Operator commands on a real 2-node cluster (process runtime), as an operator runs them:
`service logs -f` follows the service through a rollout, `service scale` and `apply` change
all or nothing, and event numbers mean the same on every node."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from node.devcluster.localcluster import LocalCluster, wait_for
from tests.integration.cluster_support import shoal, stop_nodes

pytestmark = pytest.mark.timeout(120)

# No ports and no health check: an old task stops at once when a rollout replaces it.
TALKER = ["sh", "-c", "echo hello $V; exec sleep 600"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalCluster(str(tmp_path_factory.mktemp("operator")), 2, ["--runtime", "process"])
    try:
        asyncio.run(cluster.start())
        yield cluster
    finally:
        stop_nodes(cluster)
        print(cluster.logs())


async def _create(cluster: LocalCluster, spec: dict) -> None:
    async with cluster.nodes[0].client() as client:
        await client.post("/v1/services", {"image": "process", **spec})


async def _remove(cluster: LocalCluster, name: str) -> None:
    async with cluster.nodes[0].client() as client:
        await client.delete(f"/v1/services/{name}")


async def _line(proc: asyncio.subprocess.Process, wanted: str, timeout: float = 45.0) -> str:
    """The first line of `proc`'s output holding `wanted`."""

    async def read() -> str:
        while line := (await proc.stdout.readline()).decode():
            if wanted in line:
                return line
        raise AssertionError(f"output ended (exit {await proc.wait()}) before {wanted!r}")

    return await asyncio.wait_for(read(), timeout)


async def test_logs_follow_the_service_through_a_rollout_until_it_is_removed(cluster):
    await _create(cluster, {"name": "talker", "command": TALKER, "env": {"V": "one"}})
    env = dict(
        os.environ, SHOAL_TOKEN=cluster.nodes[1].api_token, SHOAL_CA=cluster.nodes[1].ca_file
    )
    follow = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node",
        "service",
        "logs",
        "talker",
        "-f",
        "--addr",
        cluster.nodes[1].api,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        await _line(follow, "hello one")
        async with cluster.nodes[0].client() as client:
            await client.patch("/v1/services/talker", {"env": {"V": "two"}})
        # The first task ends in the rollout; its replacement's output follows.
        assert (await _line(follow, "hello two")).startswith("talker.1.")
        assert follow.returncode is None
        await _remove(cluster, "talker")
        assert await asyncio.wait_for(follow.wait(), 30) == 0
    finally:
        if follow.returncode is None:
            follow.kill()
            await follow.wait()


async def test_scale_with_an_unknown_name_scales_nothing(cluster):
    await _create(cluster, {"name": "steady", "command": ["sleep", "600"]})
    try:
        done = await asyncio.to_thread(
            shoal, "service", "scale", "steady=3", "nosuch=2", addr=cluster.nodes[1].api
        )
        assert done.returncode == 1
        assert "no such service 'nosuch'" in done.stderr and "nothing was scaled" in done.stderr
        service = await cluster.get(0, "/v1/services/steady")
        assert (service["version"], service["spec"]["replicas"]) == (1, 1)
    finally:
        await _remove(cluster, "steady")


async def test_an_apply_that_fails_creates_nothing(cluster, tmp_path):
    (tmp_path / "pw.txt").write_text("s3cret")
    (tmp_path / "app.conf").write_text("x=1")
    stack = tmp_path / "stack.yml"
    stack.write_text("""
services:
  db:
    image: process
    command: ["sleep", "600"]
    secrets: [db_password, tls_key]
    configs: [app_conf]
secrets:
  db_password: {file: ./pw.txt}
  tls_key: {external: true}
configs:
  app_conf: {file: app.conf}
""")
    done = await asyncio.to_thread(shoal, "apply", f"--file={stack}", addr=cluster.nodes[1].api)
    assert done.returncode == 2, done
    assert "secrets.tls_key: external, but the cluster has no secret 'tls_key'" in done.stderr
    assert await cluster.get(0, "/v1/secrets") == []
    assert await cluster.get(0, "/v1/configs") == []
    assert "db" not in [s["name"] for s in await cluster.get(0, "/v1/services")]


async def _events(cluster: LocalCluster, via: int, service: str, since: int = 0) -> list[dict]:
    async with cluster.nodes[via].client() as client:
        lines = client.stream_lines("/v1/events", service=service, since=str(since), follow="0")
        return [json.loads(line[5:]) async for line in lines if line.startswith("data:")]


async def test_event_numbers_mean_the_same_on_every_node(cluster):
    await _create(cluster, {"name": "counted", "command": ["sleep", "600"], "replicas": 2})

    async def both_running() -> bool:
        tasks = await cluster.get(1, "/v1/tasks?service=counted")
        return sum(t["state"] == "running" for t in tasks) == 2

    await wait_for(both_running, what="2 running tasks")
    await _remove(cluster, "counted")

    async def same_on_both() -> list[dict]:
        first, second = await _events(cluster, 0, "counted"), await _events(cluster, 1, "counted")
        if sum("-> shutdown" in e["message"] for e in first) < 2:  # both tasks ended
            return []
        key = [(e["seq"], e["type"], e["message"]) for e in first]
        return first if key == [(e["seq"], e["type"], e["message"]) for e in second] else []

    events = await wait_for(same_on_both, what="the same events, numbered alike, on both nodes")
    # `since` taken from one node's stream resumes at the same place on the other.
    middle = events[len(events) // 2]["seq"]
    assert await _events(cluster, 1, "counted", since=middle) == [
        e for e in events if e["seq"] > middle
    ]
    removed = next(e for e in events if e["type"] == "service.removed")
    created = next(e for e in events if e["type"] == "service.created")
    assert removed["at"] > created["at"]  # the removal's own time, not the last update's


async def test_a_node_is_named_by_any_unique_prefix_of_its_id(cluster):
    first, second = (n["id"] for n in await cluster.get(0, "/v1/nodes"))
    prefix = next(first[:k] for k in range(1, len(first) + 1) if not second.startswith(first[:k]))
    done = await asyncio.to_thread(
        shoal, "node", "inspect", prefix, "-o", "json", addr=cluster.nodes[0].api
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == first
