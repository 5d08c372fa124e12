"""Secrets and configs on a real 3-node cluster with the process runtime: a task reads its
secret and config files; the secret's plaintext is in no file under any node's data dir and
in no API answer (while the config's content, stored plain, is found there: the search
works); a secret in use cannot be removed; bad names, sizes and references are refused
naming the field; only the node of a task that uses a secret gets its content."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys

import aiohttp
import pytest

from node.config import load
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
from node.runtime.task_files import tmpfs_root

pytestmark = pytest.mark.timeout(180)

READER = (
    'sha256sum "$SHOAL_SECRETS_DIR/dbpw" | cut -d\' \' -f1; cat "$SHOAL_FILES_DIR/etc/app.conf"; '
    'echo; stat -c %a "$SHOAL_SECRETS_DIR/dbpw"; exec sleep 300'
)


@pytest.fixture
async def trio(tmp_path):
    async with started_cluster(str(tmp_path), 3, EQUAL_PROCESS_NODES) as cluster:
        yield cluster


def shoal(*argv: str, addr: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    # --addr goes before the arguments: `service create` takes all after IMAGE as the command.
    return subprocess.run(
        [sys.executable, "-m", "node", *argv[:2], "--addr", addr, *argv[2:]],
        input=stdin,
        capture_output=True,
        timeout=60,
        env=dict(os.environ, SHOAL_TOKEN=api_token_for(addr), SHOAL_CA=ca_for(addr)),
    )


def files_holding(roots: list[str], needle: bytes) -> list[str]:
    found = []
    for root in roots:
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    with open(path, "rb") as f:
                        if needle in f.read():
                            found.append(path)
                except OSError:  # a file that went away (journal rotation, a removed task)
                    pass
    return found


async def raw_answers(cluster: LocalCluster, tasks: list[dict]) -> dict[str, bytes]:
    """Every API answer a user can reach about the secret, its service and its tasks."""
    paths = [
        "/v1/secrets",
        "/v1/secrets/dbpw",
        "/v1/configs",
        "/v1/services",
        "/v1/services/web",
        "/v1/tasks",
        "/v1/events?follow=0",
        "/v1/nodes",
        "/v1/cluster",
    ]
    paths += [f"/v1/tasks/{t['id']}/logs" for t in tasks]
    answers = {}
    async with aiohttp.ClientSession() as session:
        for node in cluster.nodes:
            for path in paths:
                async with session.get(
                    f"https://{node.api}{path}", headers=auth_for(node.api), ssl=ssl_for(node.api)
                ) as resp:
                    answers[f"{node.name}{path}"] = await resp.read()
    return answers


async def running(cluster: LocalCluster) -> list[dict]:
    tasks = [t for t in await cluster.get(0, "/v1/tasks?service=web") if t["desired"] == "running"]
    return tasks if len(tasks) == 2 and all(t["state"] == "running" for t in tasks) else []


async def test_a_task_reads_its_secret_and_the_plaintext_is_nowhere_else(trio, tmp_path):
    addr = trio.nodes[0].api
    marker = f"SECRET-MARKER-{secrets.token_hex(8)}".encode()
    config_marker = f"CONFIG-MARKER-{secrets.token_hex(8)}".encode()
    config_file = str(tmp_path / "app.conf")
    with open(config_file, "wb") as f:
        f.write(config_marker)

    created = shoal("secret", "create", "dbpw", "-", addr=addr, stdin=marker)
    assert created.returncode == 0, created.stderr
    assert shoal("config", "create", "app.conf", config_file, addr=addr).returncode == 0
    duplicate = shoal("secret", "create", "dbpw", "-", addr=addr, stdin=b"x")
    assert duplicate.returncode == 1 and b"already exists" in duplicate.stderr
    too_big = shoal("secret", "create", "big", "-", addr=addr, stdin=b"x" * (500 * 1024 + 1))
    assert too_big.returncode == 2 and b"data: a secret holds at most 500 KiB" in too_big.stderr
    bad_name = shoal("secret", "create", "no/slash", "-", addr=addr, stdin=b"x")
    assert bad_name.returncode == 2 and b"name:" in bad_name.stderr
    missing = shoal(
        "service",
        "create",
        "--name",
        "web",
        "--secret",
        "nope",
        "process",
        "sh",
        "-c",
        "sleep 1",
        addr=addr,
    )
    assert missing.returncode == 2 and b"secrets[0].source" in missing.stderr

    made = shoal(
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--secret",
        "dbpw,mode=0400",
        "--config",
        "app.conf,target=/etc/app.conf",
        "process",
        "sh",
        "-c",
        READER,
        addr=addr,
    )
    assert made.returncode == 0, made.stderr
    tasks = await wait_for(lambda: running(trio), 60, "2 running tasks")
    expected = f"{hashlib.sha256(marker).hexdigest()}\n{config_marker.decode()}\n400\n".encode()

    async def read_back() -> bool:
        return all([await task_log(trio, t["id"]) == expected for t in tasks])

    await wait_for(read_back, 30, "each task to print its secret's hash and its config")

    in_use = shoal("secret", "rm", "dbpw", addr=addr)
    assert in_use.returncode == 1 and b"in use by service(s) web" in in_use.stderr

    # Agents open secrets in their own node's process: no caller, not even the node of a
    # task that uses the secret, gets its content over HTTP.
    keys = load(trio.nodes[0].data_dir).identity.keys
    task, owner = tasks[0], tasks[0]["node_id"]
    by_id = {load(n.data_dir).identity.node_id: n for n in trio.nodes}
    url = f"https://{trio.nodes[1].api}/v1/internal/secrets/dbpw"
    for headers in ({"Authorization": f"Bearer {keys.api_token}"}, by_id[owner].node_headers):
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.get(url, params={"task": task["id"], "node": owner}, ssl=ssl_for(url)) as resp,
        ):
            assert resp.status == 404 and marker not in await resp.read()

    data_dirs = [node.data_dir for node in trio.nodes]
    assert files_holding(data_dirs, config_marker), "the search finds what is stored plain"
    assert files_holding(data_dirs, marker) == []
    answers = await raw_answers(trio, tasks)
    assert [where for where, body in answers.items() if marker in body] == []

    shoal("service", "rm", "web", addr=addr)
    await wait_for(lambda: _files_gone(trio, tasks), 30, "the task files to be removed")
    assert shoal("secret", "rm", "dbpw", addr=addr).returncode == 0


async def task_log(cluster: LocalCluster, task_id: str) -> bytes:
    async with (
        aiohttp.ClientSession(headers=auth_for(cluster.nodes[0].api)) as session,
        session.get(
            f"https://{cluster.nodes[0].api}/v1/tasks/{task_id}/logs",
            ssl=ssl_for(cluster.nodes[0].api),
        ) as resp,
    ):
        return await resp.read()


async def _files_gone(cluster: LocalCluster, tasks: list[dict]) -> bool:
    ids = {t["id"] for t in tasks}
    left = [t for t in await cluster.get(0, "/v1/tasks") if t["id"] in ids and not t["finished_at"]]
    return not left and not any(
        os.path.exists(os.path.join(tmpfs_root(t["node_id"]), t["id"])) for t in tasks
    )
