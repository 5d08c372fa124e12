"""`shoal apply -f` with a Compose file's secrets and configs on a real node with the process
runtime: the CLI reads their `file:` paths relative to the Compose file, creates them, and
the task reads them; applying again changes nothing; a secret file with other content, and
a missing external secret, stop the apply with an error naming the file's field."""

from __future__ import annotations

import json
import secrets

import pytest

from node.devcluster.localcluster import EQUAL_PROCESS_NODES, started_cluster, wait_for
from tests.integration.cluster_support import live, must, shoal, tasks_of
from tests.integration.test_secrets_process import task_log

pytestmark = pytest.mark.timeout(120)

STACK = """\
services:
  reader:
    image: process
    command: ["sh", "-c", "cat \\"$$SHOAL_SECRETS_DIR/db_password\\"; echo; cat \\"$$SHOAL_FILES_DIR/etc/app.conf\\"; exec sleep 300"]
    secrets: [db_password]
    configs:
      - source: app_conf
        target: /etc/app.conf
secrets:
  db_password:
    file: ./private/db_password.txt
configs:
  app_conf:
    file: app.conf
"""


@pytest.fixture
async def single(tmp_path):
    (tmp_path / "cluster").mkdir()
    async with started_cluster(str(tmp_path / "cluster"), 1, EQUAL_PROCESS_NODES) as cluster:
        yield cluster


async def test_a_compose_secret_file_is_created_and_read_by_the_task(single, tmp_path):
    addr = f"https://{single.nodes[0].api}"
    stack_dir = tmp_path / "stack"
    (stack_dir / "private").mkdir(parents=True)
    password, conf = f"pw-{secrets.token_hex(8)}", f"conf-{secrets.token_hex(8)}"
    (stack_dir / "private" / "db_password.txt").write_text(password)
    (stack_dir / "app.conf").write_text(conf)
    path = stack_dir / "stack.yml"
    path.write_text(STACK)

    # The CLI runs in the repository, not beside the file: paths resolve against the file.
    first = json.loads(must(shoal("apply", f"--file={path}", "-o", "json", addr=addr)))
    assert first["files"] == [
        {"kind": "secret", "name": "db_password", "action": "created"},
        {"kind": "config", "name": "app_conf", "action": "created"},
    ]
    assert [s["action"] for s in first["services"]] == ["created"]

    async def reader_running() -> list[dict]:
        return live(await tasks_of(single, "reader"))

    (task,) = await wait_for(reader_running, 60, "the reader task running")

    async def printed() -> bytes:
        log = await task_log(single, task["id"])
        return log if log == f"{password}\n{conf}".encode() else b""

    await wait_for(printed, 30, "the task to print its secret and config")

    again = json.loads(must(shoal("apply", f"--file={path}", "-o", "json", addr=addr)))
    assert [f["action"] for f in again["files"]] == ["unchanged", "unchanged"]
    assert [s["action"] for s in again["services"]] == ["unchanged"]

    (stack_dir / "private" / "db_password.txt").write_text(password + "-rotated")
    changed = shoal("apply", f"--file={path}", addr=addr)
    assert changed.returncode == 1, changed
    assert (
        "secrets.db_password" in changed.stderr
        and "already exists with other content" in changed.stderr
    )

    path.write_text(
        STACK.replace("    secrets: [db_password]", "    secrets: [db_password, api_key]").replace(
            "\nsecrets:\n", "\nsecrets:\n  api_key:\n    external: true\n"
        )
    )
    (stack_dir / "private" / "db_password.txt").write_text(password)
    external = shoal("apply", f"--file={path}", addr=addr)
    assert external.returncode == 2, external
    assert "secrets.api_key: external, but the cluster has no secret 'api_key'" in external.stderr
    assert (await single.get(0, "/v1/services/reader"))["version"] == 1
