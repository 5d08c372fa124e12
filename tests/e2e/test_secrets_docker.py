"""Secrets and configs end to end with a real Docker Engine: a busybox task on a 3-node
cluster (`--runtime docker`) reads its secret at /run/secrets/NAME, which is a read-only
tmpfs, and its config at its target; the secret's plaintext is in no file under any node's
data dir and in no API answer; its files on the node go with the task."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets

import pytest

from node.devcluster.localcluster import wait_for
from node.runtime.model import LABEL_SERVICE
from node.runtime.task_files import tmpfs_root
from tests.e2e.docker_support import containers_of, docker_cluster, remove_containers
from tests.integration.cluster_support import must, shoal
from tests.integration.test_secrets_process import files_holding, raw_answers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def run_in(container, *argv: str) -> str:
    code, out = container.exec_run(list(argv))
    assert code == 0, out
    return out.decode()


def test_a_container_reads_its_secret_from_a_tmpfs_and_the_plaintext_is_nowhere_else(
    tmp_path, engine, busybox_image
):
    marker = f"SECRET-MARKER-{secrets.token_hex(8)}".encode()
    name = f"sec-{secrets.token_hex(4)}"
    with docker_cluster(str(tmp_path), engine) as cluster:
        try:

            async def setup() -> None:
                async with cluster.nodes[0].client() as client:
                    await client.post("/v1/secrets", {"name": "dbpw", "data": b64(marker)})
                    await client.post(
                        "/v1/configs", {"name": "app.conf", "data": b64(b"port=80\n")}
                    )

            asyncio.run(setup())
            must(
                shoal(
                    "service",
                    "create",
                    "--name",
                    name,
                    "--secret",
                    "dbpw",
                    "--config",
                    "app.conf,target=/etc/app.conf",
                    busybox_image,
                    "sleep",
                    "300",
                    addr=cluster.nodes[1].api,
                )
            )

            async def one_running() -> list:
                found = containers_of(engine, name)
                return found if len(found) == 1 and found[0].status == "running" else []

            (container,) = asyncio.run(wait_for(one_running, 60, "the service's container"))

            assert run_in(container, "cat", "/run/secrets/dbpw").encode() == marker
            assert run_in(container, "cat", "/etc/app.conf") == "port=80\n"
            mounts = run_in(container, "cat", "/proc/mounts").splitlines()
            secrets_mount = [line.split() for line in mounts if line.split()[1] == "/run/secrets"]
            assert secrets_mount and secrets_mount[0][2] == "tmpfs", mounts
            assert secrets_mount[0][3].startswith("ro"), secrets_mount
            code, _ = container.exec_run(["sh", "-c", "echo x > /run/secrets/dbpw"])
            assert code != 0, "the secrets mount is read-only"

            assert files_holding([n.data_dir for n in cluster.nodes], marker) == []
            tasks = [t for t in asyncio.run(cluster.get(0, "/v1/tasks")) if t["service"] == name]
            answers = asyncio.run(raw_answers(cluster, tasks))
            assert [where for where, body in answers.items() if marker in body] == []

            on_node = os.path.join(tmpfs_root(tasks[0]["node_id"]), tasks[0]["id"])
            assert os.path.isdir(on_node)
            must(shoal("service", "rm", name, addr=cluster.nodes[0].api))

            async def cleaned() -> bool:
                return not containers_of(engine, name) and not os.path.exists(on_node)

            asyncio.run(wait_for(cleaned, 60, "the container and its files to go"))
        finally:
            remove_containers(engine, f"{LABEL_SERVICE}={name}")
