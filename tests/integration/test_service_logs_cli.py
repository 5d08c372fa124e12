"""`shoal service logs`: every task's output, prefixed with the task, through any node."""

from __future__ import annotations

import subprocess
import sys

import pytest

from node.localcluster import LocalCluster, wait_for

pytestmark = pytest.mark.timeout(120)


async def test_service_logs_prefixes_each_tasks_lines(tmp_path):
    cluster = LocalCluster(str(tmp_path), 2, ["--runtime", "process"])
    try:
        await cluster.start()
        async with cluster.nodes[0].client() as client:
            await client.post(
                "/v1/services",
                {
                    "name": "talker",
                    "image": "process",
                    "replicas": 2,
                    "command": ["sh", "-c", "echo hello from $SHOAL_TASK_SLOT; exec sleep 60"],
                },
            )

        async def running() -> bool:
            tasks = await cluster.get(1, "/v1/tasks?service=talker")
            return sum(t["state"] == "running" for t in tasks) == 2

        await wait_for(running, what="2 running tasks")

        def logs() -> str:
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "node",
                    "service",
                    "logs",
                    "talker",
                    "--addr",
                    cluster.nodes[1].socket,
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert run.returncode == 0, run.stderr
            return run.stdout

        async def both_tasks_logged() -> str:
            out = logs()
            return out if out.count("hello from") == 2 else ""

        out = await wait_for(both_tasks_logged, what="both tasks' lines")
        lines = sorted(out.splitlines())
        assert lines[0].startswith("talker.1.") and lines[1].startswith("talker.2.")
        assert all(" | hello from" in line for line in lines)
        missing = subprocess.run(
            [
                sys.executable,
                "-m",
                "node",
                "service",
                "logs",
                "ghost",
                "--addr",
                cluster.nodes[0].socket,
            ],
            capture_output=True,
            text=True,
        )
        assert missing.returncode == 1 and "no such service" in missing.stderr
    finally:
        cluster.stop()
        print(cluster.logs())
