"""A cron job on a real 3-node cluster of `shoal node` processes: it fires on time, once
per scheduled time, through a kill -9 of the leader (no double and no missed run). A
seconds field keeps the default run short (every 5 seconds); `-m chaos` also runs the
per-minute schedule for 3 minutes after the kill."""

from __future__ import annotations

import statistics

import pytest

from node.localcluster import wait_for
from tests.integration.cluster_support import must, shoal

pytestmark = pytest.mark.timeout(150)


def scheduled(run: dict) -> int:
    return int(run["name"].rsplit("-", 1)[1])


@pytest.mark.parametrize(
    "schedule, every, runs_after",
    [
        ("* * * * * */5", 5, 4),
        pytest.param("* * * * *", 60, 3, marks=[pytest.mark.chaos, pytest.mark.timeout(420)]),
    ],
    ids=["every-5s", "every-minute"],
)
async def test_a_cron_fires_once_per_time_through_a_leader_kill(fresh, schedule, every, runs_after):
    cluster = fresh()
    await cluster.start()
    must(
        shoal(
            "cron",
            "create",
            "--name",
            "beat",
            "--schedule",
            schedule,
            "--history",
            "50",
            "process",
            "true",
            addr=cluster.nodes[0].api,
        )
    )
    bad = shoal(
        "cron",
        "create",
        "--name",
        "bad",
        "--schedule",
        "61 * * * *",
        "process",
        "true",
        addr=cluster.nodes[0].api,
    )
    assert bad.returncode == 2 and "schedule" in bad.stderr
    wait = every * 3 + 30

    async def runs(via: int, at_least: int) -> list | None:
        found = (await cluster.get(via, "/v1/crons/beat"))["runs"]
        return found if len(found) >= at_least else None

    leader = await cluster.leader_index()
    before = await wait_for(lambda: runs(leader, 1), timeout=wait, what="a first run")
    # Kill the leader just after a run started, leaving a whole interval for the failover.
    before = await wait_for(lambda: runs(leader, len(before) + 1), timeout=wait, what="a new run")
    survivor = next(i for i in range(3) if i != leader)
    cluster.nodes[leader].kill9()
    await cluster.leader_index(among=[i for i in range(3) if i != leader])
    after = await wait_for(
        lambda: runs(survivor, len(before) + runs_after),
        timeout=every * runs_after + 60,
        what=f"{runs_after} runs after the leader's death",
    )
    times = [scheduled(r) for r in after]
    assert len(set(times)) == len(times), "a scheduled time ran twice"
    assert times == list(range(times[0], times[-1] + 1, every)), f"a run was missed: {times}"
    assert all(r["status"] == "complete" or r["status"] == "running" for r in after)
    delays = [r["created_at"] - scheduled(r) for r in after]  # to the leader's decision
    print(
        f"cron firing delay over {len(delays)} runs: p50 {statistics.median(delays):.3f} s, "
        f"max {max(delays):.3f} s"
    )
    assert statistics.median(delays) < 1.0
    listed = must(shoal("cron", "ls", addr=cluster.nodes[survivor].api))
    assert "beat" in listed
    inspected = must(shoal("cron", "inspect", "beat", addr=cluster.nodes[survivor].api))
    assert inspected.startswith(f"beat: {schedule} (UTC), next run ")
    assert f"beat-{times[-1]}" in inspected
    must(shoal("cron", "rm", "beat", addr=cluster.nodes[survivor].api))
    assert not [j for j in await cluster.get(survivor, "/v1/jobs") if j["cron"] == "beat"]
