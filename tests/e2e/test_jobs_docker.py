"""Jobs end to end with a real Docker Engine: three `shoal node` processes on loopback
(`--runtime docker`) run a job's tasks as busybox containers to completion within its
parallelism, keep their output after they exited, stop a failing job at its backoff limit
with each container's exit code listed, and run a killed node's unfinished task again on
another node."""

from __future__ import annotations

import pytest

from node.devcluster.localcluster import LocalCluster, wait_for
from node.runtime.model import LABEL_SERVICE
from tests.e2e.docker_support import docker_cluster, remove_containers
from tests.integration.cluster_support import SETTLE, must, shoal

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, engine, busybox_image):
    with docker_cluster(str(tmp_path_factory.mktemp("jobs")), engine) as made:
        made.image = busybox_image
        yield made
        for name in ("five-d", "fails-d"):
            shoal("job", "rm", name, addr=made.nodes[0].api)
            remove_containers(engine, f"{LABEL_SERVICE}={name}")


async def finished(cluster: LocalCluster, name: str) -> dict:
    async def done() -> dict | None:
        job = await cluster.get(0, f"/v1/jobs/{name}")
        return job if job["status"] != "running" else None

    return await wait_for(done, timeout=SETTLE * 2, what=f"job {name} to finish")


async def test_five_completions_in_containers_two_at_a_time(cluster):
    must(
        shoal(
            "job",
            "run",
            "--name",
            "five-d",
            "--completions",
            "5",
            "--parallelism",
            "2",
            cluster.image,
            "sh",
            "-c",
            "echo slot $SHOAL_TASK_SLOT done",
            addr=cluster.nodes[0].api,
        )
    )
    job = await finished(cluster, "five-d")
    assert (job["status"], job["succeeded"], job["failed"]) == ("complete", 5, 0), job
    assert sorted(t["slot"] for t in job["tasks"]) == [1, 2, 3, 4, 5]
    assert all(t["exit_code"] == 0 for t in job["tasks"])
    logs = must(shoal("job", "logs", "five-d", addr=cluster.nodes[1].api))
    assert sorted(line.split("| ")[1] for line in logs.splitlines()) == [
        f"slot {i} done" for i in range(1, 6)
    ]


async def test_a_failing_job_stops_at_its_limit_with_the_exit_codes(cluster):
    must(
        shoal(
            "job",
            "run",
            "--name",
            "fails-d",
            "--backoff-limit",
            "1",
            "--backoff-delay",
            "0.2s",
            cluster.image,
            "sh",
            "-c",
            "exit 7",
            addr=cluster.nodes[0].api,
        )
    )
    job = await finished(cluster, "fails-d")
    assert job["status"] == "failed" and job["reason"].startswith("BackoffLimitExceeded"), job
    assert [(t["attempt"], t["exit_code"]) for t in job["tasks"]] == [(1, 7), (2, 7)]


async def test_a_killed_nodes_unfinished_container_task_runs_again_elsewhere(
    own,
    engine,
    busybox_image,
):
    try:
        must(
            shoal(
                "job",
                "run",
                "--name",
                "moved-d",
                "--completions",
                "3",
                "--parallelism",
                "0",
                busybox_image,
                "sleep",
                "4",
                addr=own.nodes[0].api,
            )
        )

        async def spread() -> list | None:
            job = await own.get(0, "/v1/jobs/moved-d")
            running = [t for t in job["tasks"] if t["state"] == "running"]
            return running if len({t["node_name"] for t in running}) == 3 else None

        running = await wait_for(spread, timeout=SETTLE, what="3 containers on 3 nodes")
        leader = await own.leader_index()
        victim = next(i for i in range(1, 3) if i != leader)
        lost = next(t for t in running if t["node_name"] == own.nodes[victim].name)
        own.nodes[victim].kill9()

        async def done() -> dict | None:
            job = await own.get(0, "/v1/jobs/moved-d")
            return job if job["status"] != "running" else None

        job = await wait_for(done, timeout=90, what="the job to finish")
        assert (job["status"], job["succeeded"]) == ("complete", 3), job
        slot = [t for t in job["tasks"] if t["slot"] == lost["slot"]]
        assert any(
            t["state"] == "complete" and t["node_name"] != own.nodes[victim].name for t in slot
        ), slot
    finally:
        remove_containers(engine, f"{LABEL_SERVICE}=moved-d")
