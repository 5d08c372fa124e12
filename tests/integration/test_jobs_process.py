"""Jobs on a real 3-node cluster of `shoal node` processes (process runtime): completions
within the parallelism, exit codes and logs kept after the end, a failing job stopped at its
backoff limit, the TTL, and a killed node's unfinished task run again elsewhere."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import aiohttp
import pytest

from node.devcluster.localcluster import LocalCluster, auth_for, ssl_for, wait_for
from tests.integration.cluster_support import SETTLE, must, process_cluster, shoal

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    with process_cluster(str(tmp_path_factory.mktemp("jobs")), 3) as cluster:
        asyncio.run(cluster.start())
        yield cluster


def run(cluster: LocalCluster, name: str, *flags: str) -> None:
    must(shoal("job", "run", "--name", name, *flags, addr=cluster.nodes[0].api))


async def until_finished(
    cluster: LocalCluster, name: str, timeout: float = SETTLE, via: int = 1
) -> dict:
    async def finished() -> dict | None:
        job = await cluster.get(via, f"/v1/jobs/{name}")
        return job if job["status"] != "running" else None

    return await wait_for(finished, timeout=timeout, what=f"job {name} to finish")


def most_at_once(tasks: list[dict]) -> int:
    """The most tasks that were alive (created, not yet finished) at one time."""
    edges = sorted(
        [(t["created_at"], 1) for t in tasks] + [(t["finished_at"], -1) for t in tasks],
        key=lambda e: (e[0], e[1]),
    )
    alive = peak = 0
    for _, step in edges:
        alive += step
        peak = max(peak, alive)
    return peak


async def test_five_completions_two_at_a_time_keep_their_exit_codes_and_logs(shared):
    run(
        shared,
        "five",
        "--completions",
        "5",
        "--parallelism",
        "2",
        "process",
        "sh",
        "-c",
        "echo done slot $SHOAL_TASK_SLOT; sleep 0.3",
    )
    job = await until_finished(shared, "five")
    assert (job["status"], job["succeeded"], job["failed"]) == ("complete", 5, 0), job
    assert sorted(t["slot"] for t in job["tasks"]) == [1, 2, 3, 4, 5]  # none ran twice
    assert all((t["state"], t["exit_code"]) == ("complete", 0) for t in job["tasks"])
    assert most_at_once(job["tasks"]) <= 2
    assert len({t["node_id"] for t in job["tasks"]}) > 1
    listed = must(shoal("job", "ls", addr=shared.nodes[2].api))
    assert any(
        r.split()[1:5] == ["five", "replicated", "complete", "5/5"] for r in listed.splitlines()
    )
    logs = must(shoal("job", "logs", "five", addr=shared.nodes[1].api))
    assert sorted(line.split("| ")[1] for line in logs.splitlines()) == [
        f"done slot {i}" for i in range(1, 6)
    ]


async def test_a_failing_job_stops_at_its_backoff_limit_with_the_exit_codes_listed(shared):
    run(
        shared,
        "failing",
        "--backoff-limit",
        "2",
        "--backoff-delay",
        "0.2s",
        "process",
        "sh",
        "-c",
        "exit 3",
    )
    job = await until_finished(shared, "failing")
    assert job["status"] == "failed" and job["reason"].startswith("BackoffLimitExceeded"), job
    assert [(t["attempt"], t["exit_code"], t["state"]) for t in job["tasks"]] == [
        (1, 3, "failed"),
        (2, 3, "failed"),
        (3, 3, "failed"),
    ]
    await asyncio.sleep(1.0)  # past the next backoff: still no fourth attempt
    assert len((await shared.get(0, "/v1/jobs/failing"))["tasks"]) == 3
    rows = must(shoal("job", "ps", "failing", addr=shared.nodes[0].api)).splitlines()
    assert rows[0].startswith("failing: failed: BackoffLimitExceeded: 3 failed tasks (limit 2)")
    assert [r.split()[5:7] for r in rows[2:]] == [["failed", "3"]] * 3


async def test_a_finished_job_goes_after_its_ttl_and_bad_flags_name_the_field(shared):
    run(shared, "brief", "--ttl-after-finished", "1s", "process", "true")
    assert (await until_finished(shared, "brief"))["status"] == "complete"

    async def gone() -> bool:
        return all(j["name"] != "brief" for j in await shared.get(0, "/v1/jobs"))

    await wait_for(gone, timeout=SETTLE, what="the job to expire")
    bad = shoal(
        "job",
        "run",
        "--name",
        "bad",
        "--completions",
        "0",
        "process",
        "true",
        addr=shared.nodes[0].api,
    )
    assert bad.returncode == 2 and "job.completions" in bad.stderr
    missing = shoal("job", "ps", "nope", addr=shared.nodes[0].api)
    assert missing.returncode == 1 and "no such job" in missing.stderr


async def test_a_killed_nodes_unfinished_task_runs_again_elsewhere(fresh):
    cluster = fresh()
    await cluster.start()
    run(
        cluster,
        "moved",
        "--completions",
        "3",
        "--parallelism",
        "0",
        "process",
        "sh",
        "-c",
        "sleep 4",
    )

    async def spread() -> list | None:
        job = await cluster.get(0, "/v1/jobs/moved")
        running = [t for t in job["tasks"] if t["state"] == "running"]
        return running if len({t["node_name"] for t in running}) == 3 else None

    running = await wait_for(spread, timeout=SETTLE, what="3 tasks running on 3 nodes")
    leader = await cluster.leader_index()
    victim = next(i for i in range(3) if i != leader and i != 0)
    lost = next(t for t in running if t["node_name"] == cluster.nodes[victim].name)
    cluster.nodes[victim].kill9()
    job = await until_finished(cluster, "moved", timeout=60, via=0)
    assert (job["status"], job["succeeded"], job["failed"]) == ("complete", 3, 0), job
    slot = [t for t in job["tasks"] if t["slot"] == lost["slot"]]
    done = next(t for t in slot if t["state"] == "complete")
    assert done["node_name"] != cluster.nodes[victim].name and done["attempt"] == 1
    assert any(t["id"] == lost["id"] and t["state"] == "orphaned" for t in slot), json.dumps(slot)


async def _raw(method: str, url: str, **kwargs) -> tuple[int, dict]:
    """A request as an API client sends it, with the token and a JSON Content-Type."""
    headers = {"Content-Type": "application/json", **auth_for(urlsplit(url).netloc)}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, ssl=ssl_for(url), **kwargs) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_bad_job_and_cron_requests_get_400_naming_the_field(shared):
    base = f"https://{shared.nodes[0].api}/v1"
    cases = [
        ("jobs", {"data": b"{not json"}, "body"),
        ("jobs", {"json": ["a", "list"]}, "body"),
        (
            "jobs",
            {"json": {"name": "j", "image": "process", "job": {"parallelism": "x"}}},
            "job.parallelism",
        ),
        ("jobs", {"json": {"name": "j", "image": "process", "ports": ["80"]}}, "ports"),
        ("crons", {"json": {"name": "c", "schedule": "* * * * *"}}, "template"),
        (
            "crons",
            {"json": {"name": "c", "schedule": "nope", "template": {"image": "process"}}},
            "schedule",
        ),
        (
            "crons",
            {
                "json": {
                    "name": "c",
                    "schedule": "* * * * *",
                    "timezone": "Nowhere/Here",
                    "template": {"image": "process"},
                }
            },
            "timezone",
        ),
        (
            "crons",
            {
                "json": {
                    "name": "c",
                    "schedule": "* * * * *",
                    "history": 1000,
                    "template": {"image": "process"},
                }
            },
            "history",
        ),
    ]
    for path, kwargs, field in cases:
        status, body = await _raw("POST", f"{base}/{path}", **kwargs)
        assert status == 400, (path, kwargs, body)
        assert body.get("field", "") == field, (path, kwargs, body)
    status, body = await _raw("GET", f"{base}/crons/nope")
    assert status == 404 and "no such cron job" in body["error"]
