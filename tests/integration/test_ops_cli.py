"""Operators' listing and watching commands on a real 2-node cluster (process runtime),
whose nodes write JSON logs: `node ps`, `service ps --filter/-q/--no-trunc`, `shoal events`
(followed, replayed, filtered, ended by Ctrl-C), and every node log line an object."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import pytest

from node.devcluster.localcluster import LocalCluster, NodeProc, wait_for
from tests.integration.cluster_support import (
    must,
    remove_task_processes,
    shoal,
    stop_nodes,
    tasks_of,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalCluster(
        str(tmp_path_factory.mktemp("ops")), 2, ["--runtime", "process", "--log-format", "json"]
    )
    try:
        asyncio.run(cluster.start())
        # Two replicas, one per node (spread), then one more and back: a task told to stop.
        asyncio.run(_service(cluster))
        yield cluster
    finally:
        stop_nodes(cluster)
        asyncio.run(remove_task_processes(cluster))
        print(cluster.logs())


async def _service(cluster: LocalCluster) -> None:
    async with cluster.nodes[0].client() as client:
        await client.post(
            "/v1/services",
            {"name": "web", "image": "process", "replicas": 3, "command": ["sleep", "600"]},
        )

    async def three_running() -> bool:
        return sum(t["state"] == "running" for t in await tasks_of(cluster, "web")) == 3

    await wait_for(three_running, what="3 running tasks")
    async with cluster.nodes[0].client() as client:
        await client.patch("/v1/services/web", {"replicas": 2})

    async def one_shut() -> bool:
        return sum(t["desired"] == "shutdown" for t in await tasks_of(cluster, "web")) == 1

    await wait_for(one_shut, what="a task told to shut down")


def _tasks(cluster: LocalCluster) -> list[dict]:
    return asyncio.run(tasks_of(cluster, "web"))


def test_service_ps_filters_and_quiet(cluster):
    api = cluster.nodes[0].api
    tasks = _tasks(cluster)
    running = sorted(t["id"] for t in tasks if t["desired"] == "running")
    shut = [t["id"] for t in tasks if t["desired"] == "shutdown"]
    quiet = must(
        shoal(
            "service",
            "ps",
            "web",
            "-q",
            "--no-trunc",
            "--filter",
            "desired-state=running",
            addr=api,
        )
    ).split()
    assert sorted(quiet) == running
    assert must(
        shoal("service", "ps", "web", "-q", "-f", "desired-state=shutdown", addr=api)
    ).split() == [shut[0][:12]]
    on_n2 = sorted(t["id"][:12] for t in tasks if t["node_name"] == "n2")
    assert (
        sorted(must(shoal("service", "ps", "web", "-q", "--filter", "node=n2", addr=api)).split())
        == on_n2
    )
    # A key's values are ORed, keys ANDed.
    both = must(
        shoal(
            "service",
            "ps",
            "web",
            "-q",
            "--filter",
            "name=web.1",
            "--filter",
            "name=web.2",
            "--filter",
            "desired-state=running",
            addr=api,
        )
    ).split()
    assert (
        len(both)
        == len([t for t in tasks if t["slot"] in (1, 2) and t["desired"] == "running"])
        > 0
    )
    table = must(shoal("service", "ps", "web", "--filter", "desired-state=shutdown", addr=api))
    assert table.splitlines()[0].split()[:3] == ["ID", "NAME", "NODE"]
    assert len(table.splitlines()) == 2
    bad = shoal("service", "ps", "web", "--filter", "colour=red", addr=api)
    assert bad.returncode == 2 and "desired-state, id, name, node" in bad.stderr


def test_node_ps_lists_one_nodes_tasks(cluster):
    tasks = _tasks(cluster)
    for node in cluster.nodes:
        mine = sorted(t["id"] for t in tasks if t["node_name"] == node.name)
        # Without NODE: the node answering, as docker's `self`.
        itself = must(shoal("node", "ps", "-q", "--no-trunc", addr=node.api)).split()
        named = must(
            shoal("node", "ps", node.name, "-q", "--no-trunc", addr=cluster.nodes[0].api)
        ).split()
        assert sorted(itself) == sorted(named) == mine and mine
    rows = json.loads(
        must(
            shoal(
                "node",
                "ps",
                "n1",
                "-o",
                "json",
                "--filter",
                "desired-state=running",
                addr=cluster.nodes[1].api,
            )
        )
    )
    assert {(t["node_name"], t["desired"]) for t in rows} == {("n1", "running")}
    missing = shoal("node", "ps", "nosuch", addr=cluster.nodes[0].api)
    assert missing.returncode == 1 and "nosuch" in missing.stderr


async def _line(proc: asyncio.subprocess.Process, timeout: float = 30.0) -> str:
    return (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode()


async def test_events_follow_from_now_and_end_on_ctrl_c(cluster):
    node = cluster.nodes[1]
    env = dict(os.environ, SHOAL_TOKEN=node.api_token, SHOAL_CA=node.ca_file)
    watch = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node",
        "events",
        "--addr",
        node.api,
        "--format",
        "json",
        "--filter",
        "type=service",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        await asyncio.sleep(1.5)  # it has skipped the kept events and follows
        async with cluster.nodes[0].client() as client:
            await client.post(
                "/v1/services", {"name": "later", "image": "process", "command": ["sleep", "600"]}
            )
        first = json.loads(await _line(watch))
        # Not web's kept events (created, updated): from now on; no task events (type=service).
        assert (first["type"], first["service"]) == ("service.created", "later")
        watch.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(watch.wait(), 10) == 130
        assert b"Traceback" not in await watch.stderr.read()
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
        async with cluster.nodes[0].client() as client:
            await client.delete("/v1/services/later")


def test_events_since_until_replays_and_ends(cluster):
    started = time.time()
    done = shoal(
        "events",
        "--filter=event=task.created",
        "--since",
        "10m",
        "--until",
        str(started),
        addr=cluster.nodes[0].api,
    )
    lines = must(done).splitlines()
    # web's three tasks, each as `TIME task.created task web.N ... created ...`.
    assert len([line for line in lines if " task.created task web." in line]) >= 3
    assert all(ln.split()[1] == "task.created" and ln.split()[0].endswith("Z") for ln in lines)
    # An --until to come: it follows until then, and ends.
    until = shoal(
        "events", "--filter=name=nosuch", "--until", str(time.time() + 2), addr=cluster.nodes[0].api
    )
    assert until.returncode == 0 and until.stdout == "" and time.time() - started >= 2
    bad = shoal(
        "events", "--filter=type=task", "--since", "yesterday-ish", addr=cluster.nodes[0].api
    )
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_node_logs_are_one_json_object_a_line(cluster):
    with open(cluster.nodes[0].log_path) as f:
        lines = [line for line in f.read().splitlines() if line]
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= entry.keys(), line
        assert entry["time"].endswith("Z") and entry["level"] in (
            "debug",
            "info",
            "warning",
            "error",
            "critical",
        )


def test_a_restarted_local_node_keeps_its_log_format(tmp_path):
    node = NodeProc(1, 1, str(tmp_path), ["--runtime", "process", "--log-format", "json"])
    os.makedirs(node.data_dir)
    open(os.path.join(node.data_dir, "node.json"), "w").close()  # as after its first start
    argv = node.command()
    assert argv[argv.index("--data-dir") + 1 :] == [node.data_dir, "--log-format", "json"]
    assert "--log-format" not in NodeProc(1, 1, str(tmp_path), ["--runtime", "process"]).command()
