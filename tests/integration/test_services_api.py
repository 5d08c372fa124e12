"""Services through the HTTP API and the CLI on real node processes: create, list, inspect,
scale, update, remove; bad specs; applying Kubernetes and Compose files; pending reasons."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import aiohttp
import pytest

from node.devcluster.localcluster import (
    EQUAL_PROCESS_NODES,
    LocalCluster,
    api_token_for,
    auth_for,
    ca_for,
    ssl_for,
    started_cluster,
    wait_for,
)
from tests.support import fixture_text

pytestmark = pytest.mark.timeout(180)

SEED_DEPLOYMENT = fixture_text("web-app-deployment.yaml")

STACK = """\
version: "3.8"
services:
  api:
    image: process
    command: ["sleep", "300"]
    ports: ["18000:8000"]
    cap_add: [NET_ADMIN]
    deploy:
      replicas: 2
      resources:
        reservations: {cpus: "0.1", memory: 32M}
      restart_policy: {condition: on-failure, delay: 2s}
  worker:
    image: process
    command: sleep 300
    deploy:
      mode: global
"""


# Tasks that should run are plain processes (image "process"), so no Docker Engine is needed.
SLEEPER = {"image": "process", "command": ["sleep", "300"]}


@pytest.fixture
async def single(tmp_path):
    async with started_cluster(str(tmp_path), 1, ["--runtime", "process"]) as cluster:
        yield cluster


@pytest.fixture
async def trio(tmp_path):
    # Equal, fixed capacities, so placement does not depend on this machine's size.
    async with started_cluster(str(tmp_path), 3, EQUAL_PROCESS_NODES) as cluster:
        yield cluster


def shoal(
    command: str, *args: str, addr: str, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """`shoal COMMAND --addr ADDR ARGS...`: options go first, since everything after
    `service create`'s IMAGE belongs to the task's command."""
    return subprocess.run(
        [sys.executable, "-m", "node", *command.split(), "--addr", addr, *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        env=dict(os.environ, SHOAL_TOKEN=api_token_for(addr), SHOAL_CA=ca_for(addr)),
    )


async def call(method: str, url: str, **kwargs) -> tuple[int, object]:
    async with (
        aiohttp.ClientSession(headers=auth_for(url)) as session,
        session.request(method, url, ssl=ssl_for(url), **kwargs) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def tasks_of(cluster: LocalCluster, name: str, i: int = 0) -> list[dict]:
    return await cluster.get(i, f"/v1/tasks?service={name}")


async def running_tasks(cluster: LocalCluster, name: str, count: int) -> list[dict]:
    """The service's tasks once exactly `count` of them should run and all do."""
    live = [t for t in await tasks_of(cluster, name) if t["desired"] == "running"]
    return live if len(live) == count and all(t["state"] == "running" for t in live) else []


async def test_service_lifecycle_through_the_api(single):
    base = f"https://{single.nodes[0].api}/v1"
    status, created = await call(
        "POST",
        f"{base}/services",
        json={
            **SLEEPER,
            "name": "web",
            "replicas": 3,
            "ports": ["8080:80"],
            "resources": {"reservations": {"cpu": "100m", "memory": "64M"}},
        },
    )
    assert status == 201, created
    assert created["version"] == 1 and created["previous_versions"] == 0 and created["id"]
    assert created["spec"]["resources"]["reservations"] == {
        "cpu_millis": 100,
        "memory_bytes": 64 << 20,
    }

    tasks = await wait_for(lambda: running_tasks(single, "web", 3), what="3 running tasks")
    assert sorted(t["slot"] for t in tasks) == [1, 2, 3]
    assert {t["node_name"] for t in tasks} == {"n1"} and all(t["created_at"] > 0 for t in tasks)
    (listed,) = await single.get(0, "/v1/services")
    assert listed["name"] == "web" and listed["replicas"]["desired"] == 3
    assert listed["replicas"]["running"] == 3 and listed["replicas"]["states"] == {"running": 3}

    status, scaled = await call("PATCH", f"{base}/services/web", json={"replicas": 5})
    assert status == 200 and scaled["version"] == 2 and scaled["previous_versions"] == 1
    await wait_for(lambda: running_tasks(single, "web", 5), what="5 running tasks")
    status, changed = await call(
        "PATCH", f"{base}/services/{created['id']}", json={"env": {"A": "1"}}
    )
    assert status == 200 and changed["version"] == 3 and changed["spec"]["replicas"] == 5
    status, same = await call("PATCH", f"{base}/services/web", json={"env": {"A": "1"}})
    assert status == 200 and same["version"] == 3  # nothing changed, no new version

    status, stale = await call("PATCH", f"{base}/services/web?version=1", json={"replicas": 1})
    assert status == 409 and "version 3" in stale["error"]
    status, renamed = await call("PATCH", f"{base}/services/web", json={"name": "other"})
    assert (status, renamed["field"]) == (400, "name")
    status, bad = await call("PATCH", f"{base}/services/web", json={"replicas": "many"})
    assert (status, bad["field"]) == (400, "replicas")
    status, inspected = await call("GET", f"{base}/services/web")
    assert inspected["version"] == 3 and inspected["spec"]["replicas"] == 5

    status, deleted = await call("DELETE", f"{base}/services/web")
    assert status == 200 and deleted == {"deleted": "web", "id": created["id"]}
    status, gone = await call("GET", f"{base}/services/web")
    assert status == 404 and "no such service" in gone["error"]
    assert all(t["desired"] == "shutdown" for t in await tasks_of(single, "web"))
    status, _ = await call("DELETE", f"{base}/services/web")
    assert status == 404
    status, unknown = await call("GET", f"{base}/tasks?service=ghost")
    assert (status, unknown["field"]) == (404, "service")


BAD_SPECS = [
    ({"name": "neg", "image": "x", "replicas": -1}, "replicas"),
    ({"name": "con", "image": "x", "constraints": ["zone=a"]}, "constraints[0]"),
    ({"name": "key", "image": "x", "constraints": ["node.zone==a"]}, "constraints[0]"),
    (
        {"name": "mem", "image": "x", "resources": {"limits": {"memory": "12XB"}}},
        "resources.limits.memory",
    ),
    ({"name": "port", "image": "x", "ports": ["8080:70000"]}, "ports[0].target"),
    (
        {"name": "pub", "image": "x", "ports": [{"target": 80, "published": 65536}]},
        "ports[0].published",
    ),
    ({"name": "unk", "image": "x", "colour": "red"}, "colour"),
    ({"name": "Bad_Name", "image": "x"}, "name"),
    ({"image": "x"}, "name"),
    (["not", "an", "object"], "body"),
]


async def test_bad_specs_get_400_naming_the_field(single):
    for body, field in BAD_SPECS:
        status, answer = await call("POST", f"https://{single.nodes[0].api}/v1/services", json=body)
        assert status == 400, answer
        assert answer["field"] == field and answer["error"], (body, answer)
    assert await single.get(0, "/v1/services") == []


async def test_duplicate_names_conflict_and_garbage_bodies_are_refused(single):
    url = f"https://{single.nodes[0].api}/v1/services"
    assert (await call("POST", url, json={"name": "web", "image": "x"}))[0] == 201
    status, answer = await call("POST", url, json={"name": "web", "image": "y"})
    assert status == 409 and answer["field"] == "name" and "already exists" in answer["error"]
    status, answer = await call(
        "POST", url, data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and "JSON" in answer["error"]
    status, answer = await call(
        "POST",
        f"https://{single.nodes[0].api}/v1/apply",
        data=b"\xff\xfe",
        headers={"Content-Type": "application/yaml"},
    )
    assert status == 400 and answer["field"] == "body"
    (only,) = await single.get(0, "/v1/services")
    assert only["spec"]["image"] == "x"


async def test_cli_create_ls_ps_scale_update_inspect_rm(single):
    addr = f"https://{single.nodes[0].api}"
    created = shoal(
        "service create",
        "--name",
        "web",
        "--replicas",
        "2",
        "-p",
        "8080:80",
        "--env",
        "MODE=prod",
        "--constraint",
        "node.role==voter",
        "--reserve-cpu",
        "0.1",
        "--reserve-memory",
        "32M",
        "--health-cmd",
        "true",
        "--restart-condition",
        "on-failure",
        "process",
        "sleep",
        "300",
        addr=addr,
    )
    assert created.returncode == 0, created.stderr
    service_id = created.stdout.strip()

    listed = shoal("service ls", addr=addr)
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
    assert row.split()[:3] == [service_id, "web", "replicated"] and "*:8080->80/tcp" in row

    await wait_for(lambda: running_tasks(single, "web", 2), what="2 running tasks")
    ps = shoal("service ps", "web", addr=addr)
    lines = ps.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "NAME", "NODE", "DESIRED"]
    assert sorted(line.split()[1] for line in lines[1:]) == ["web.1", "web.2"]
    assert all(" n1 " in line and "running" in line for line in lines[1:])

    scaled = shoal("service scale", "web=4", addr=addr)
    assert scaled.returncode == 0 and scaled.stdout.strip() == "web scaled to 4"
    updated = shoal(
        "service update",
        "web",
        "--env-add",
        "LEVEL=debug",
        "--env-rm",
        "MODE",
        "--args",
        "sleep 600",
        "--health-retries",
        "5",
        addr=addr,
    )
    assert updated.returncode == 0, updated.stderr
    inspected = json.loads(shoal("service inspect", "web", "-o", "json", addr=addr).stdout)
    spec = inspected["spec"]
    assert (inspected["version"], spec["replicas"], spec["image"]) == (3, 4, "process")
    assert spec["env"] == {"LEVEL": "debug"} and spec["args"] == ["sleep", "600"]
    assert (spec["health"]["kind"], spec["health"]["retries"]) == ("cmd", 5)
    tasks = json.loads(shoal("service ps", "web", "-o", "json", addr=addr).stdout)
    assert tasks and all(t["service"] == "web" for t in tasks)

    removed = shoal("service rm", "web", addr=addr)
    assert removed.returncode == 0 and removed.stdout.strip() == "web"
    assert json.loads(shoal("service ls", "-o", "json", addr=addr).stdout) == []


BAD_FLAGS = [
    (("--replicas", "-1"), ["replicas"]),
    (("--constraint", "zone=a"), ["constraints[0]", "KEY==VALUE"]),
    (("--reserve-memory", "12XB"), ["resources.reservations.memory"]),
    (("-p", "8080:70000"), ["ports[0].target"]),
    (("--env", "NOVALUE"), ["KEY=VALUE"]),
]


async def test_cli_rejects_bad_flags_with_exit_2_and_one_line(single):
    for flags, words in BAD_FLAGS:
        result = shoal(
            "service create",
            "--name",
            "web",
            *flags,
            "busybox",
            addr=f"https://{single.nodes[0].api}",
        )
        assert result.returncode == 2, result
        last = result.stderr.strip().splitlines()[-1]
        assert all(word in last for word in words), result.stderr
    assert await single.get(0, "/v1/services") == []


async def test_the_seed_deployment_applies_with_50_replicas_across_nodes(trio):
    addr = f"https://{trio.nodes[1].api}"  # a follower: the writes are forwarded to the leader
    first = shoal("apply", "-f", "-", "-o", "json", addr=addr, stdin=SEED_DEPLOYMENT)
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    assert answer == {
        "services": [{"name": "web-app", "action": "created", "version": 1}],
        "warnings": [],
        "stack": "",
        "networks": [{"name": "default", "action": "created"}],
    }
    service = await trio.get(2, "/v1/services/web-app")
    assert service["spec"]["replicas"] == 50 and service["spec"]["image"] == "myapp:v2"
    assert service["spec"]["resources"]["reservations"] == {
        "cpu_millis": 100,
        "memory_bytes": 128 << 20,
    }

    async def all_slots_placed() -> list[dict]:
        # `myapp:v2` is no image this machine has, so agents reject the tasks and they are
        # replaced; what counts here is that every slot was placed, across the nodes.
        placed = [t for t in await tasks_of(trio, "web-app") if t["node_id"]]
        return placed if {t["slot"] for t in placed} == set(range(1, 51)) else []

    placed = await wait_for(all_slots_placed, what="all 50 slots placed")
    assert {t["node_name"] for t in placed} == {"n1", "n2", "n3"}

    again = shoal("apply", "-f", "-", addr=addr, stdin=SEED_DEPLOYMENT)
    assert again.returncode == 0 and again.stdout.split()[3:6] == ["web-app", "unchanged", "1"]
    assert (await trio.get(0, "/v1/services/web-app"))["version"] == 1


async def test_pending_tasks_say_why_in_service_ps(trio):
    async with trio.nodes[0].client() as client:
        await client.patch("/v1/nodes/n1", {"add_labels": {"zone": "a"}})
    addr = f"https://{trio.nodes[0].api}"
    created = shoal(
        "service create",
        "--name",
        "huge",
        "--constraint",
        "node.labels.zone==a",
        "--reserve-memory",
        "64G",
        "busybox",
        addr=addr,
    )
    assert created.returncode == 0, created.stderr

    async def explained() -> list[dict]:
        tasks = await tasks_of(trio, "huge")
        return tasks if tasks and tasks[0]["pending_reason"] else []

    (task,) = await wait_for(explained, what="a pending explanation")
    assert task["state"] == "pending" and task["node_id"] == ""
    ps = shoal("service ps", "huge", addr=addr)
    assert (
        "pending: constraint node.labels.zone==a unmet on 2 nodes; insufficient memory on 1 node"
        in ps.stdout
    ), ps.stdout


async def test_compose_file_applies_reapplies_unchanged_and_strict_refuses(single, tmp_path):
    addr = f"https://{single.nodes[0].api}"
    path = tmp_path / "stack.yml"
    path.write_text(STACK)
    strict = shoal("apply", "-f", str(path), "--strict", addr=addr)
    assert strict.returncode == 2 and "cap_add" in strict.stderr
    assert json.loads(shoal("service ls", "-o", "json", addr=addr).stdout) == []

    first = shoal("apply", "-f", str(path), addr=addr)
    assert first.returncode == 0, first.stderr
    rows = [line.split() for line in first.stdout.splitlines()[1:]]
    assert rows == [["api", "created", "1"], ["worker", "created", "1"]]
    assert "warning: services.api.cap_add: capabilities are not granted" in first.stderr
    api = await single.get(0, "/v1/services/api")
    assert api["spec"]["replicas"] == 2 and api["spec"]["restart"]["condition"] == "on-failure"
    assert (await single.get(0, "/v1/services/worker"))["spec"]["mode"] == "global"
    await wait_for(lambda: running_tasks(single, "worker", 1), what="the global task running")
    await wait_for(lambda: running_tasks(single, "api", 2), what="2 api tasks running")

    again = json.loads(shoal("apply", "-f", str(path), "-o", "json", addr=addr).stdout)
    assert [s["action"] for s in again["services"]] == ["unchanged", "unchanged"]
    path.write_text(STACK.replace("replicas: 2", "replicas: 4"))
    changed = json.loads(shoal("apply", "-f", str(path), "-o", "json", addr=addr).stdout)
    assert [(s["name"], s["action"], s["version"]) for s in changed["services"]] == [
        ("api", "updated", 2),
        ("worker", "unchanged", 1),
    ]

    clash = [
        {"name": "clash", "image": "process", "ports": ["18000:80"]},
        {**SLEEPER, "name": "fine"},
    ]
    status, answer = await call("POST", f"{addr}/v1/apply", json=clash)
    assert (status, answer["field"]) == (409, "services.clash.ports")
    assert "18000/tcp is already published" in answer["error"]
    assert "nothing was applied" in answer["error"]  # checked whole before any change
    assert "fine" not in [s["name"] for s in await single.get(0, "/v1/services")]

    scale_global = shoal("service scale", "worker=3", addr=addr)
    assert scale_global.returncode == 2 and "global" in scale_global.stderr
    missing = shoal("apply", "-f", str(tmp_path / "nope.yml"), addr=addr)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
