"""Cron and rebalancing end to end with a real Docker Engine, both at once on one cluster of
`shoal node` processes on loopback (`--runtime docker`, proxy data plane), since the cron
needs a minute of wall-clock time anyway:

- a cron job fires a busybox container every PERIOD seconds (a seconds field), three times,
  through a kill -9 of the leader after its first run: each scheduled time of the window
  ran once, none twice (a schedule of whole minutes runs the same code, `-m chaos` plays it
  with processes);
- meanwhile a 6-replica busybox httpd service on 2 nodes (kept off the leader, which dies)
  spreads to a third node that joins: exactly 2 tasks move to it, at no look at the API are
  more than `--max-unavailable` replicas down, and no request through the mesh fails.

The nodes run until the cron scenario ends; the tests then check what each scenario saw."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from node.client import ApiError, Unreachable
from node.devcluster.localcluster import LocalCluster, wait_for
from tests.e2e.docker_support import docker_cluster, httpd_service
from tests.integration.cluster_support import live, must, shoal
from tests.integration.mesh_support import serving
from tests.integration.test_cron_process import scheduled
from tests.integration.test_rollout_mesh import hammer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(330)]

PERIOD = 20
CRON_RUNS = 3  # the first before the leader's death, the others after it
REPLICAS, MAX_UNAVAILABLE = 6, 1
JOINER = 3  # the index of the node that joins: n4


@dataclass
class CronSeen:
    window: tuple[float, float]  # from the cron's creation to its last awaited run's end
    killed_at: float
    first_run: int  # the scheduled time of the run before the kill
    jobs: list[dict]  # every job the cron started, with its tasks


@dataclass
class RebalanceSeen:
    moved: list[dict]  # the tasks whose message says they moved
    placed: Counter  # running tasks per node name at the end
    down: list[int] = field(default_factory=list)  # replicas down, at every look at the API
    unanswered_looks: int = 0  # looks the API did not answer (the leader's election)
    joined_at: float = 0.0
    spread_at: float = 0.0  # when 2 healthy tasks ran on each node
    requests: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    cron: CronSeen | BaseException
    rebalance: RebalanceSeen | BaseException


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, engine, busybox_image) -> Outcome:
    with docker_cluster(
        str(tmp_path_factory.mktemp("cron-rebalance")),
        engine,
        "--lb-dataplane",
        "proxy",
        size=4,
        started=3,
    ) as cluster:
        found = asyncio.run(both_scenarios(cluster, busybox_image))
    if isinstance(found.cron, CronSeen) and isinstance(found.rebalance, RebalanceSeen):
        joined = found.rebalance.joined_at
        print(
            f"the joiner came in {joined - found.cron.window[0]:.1f} s after the cron's creation, "
            f"the spread was even {found.rebalance.spread_at - joined:.1f} s later; "
            f"the leader was killed {found.cron.killed_at - joined:.1f} s after the join"
        )
    return found


def seen(found: object) -> object:
    """A scenario's findings, or its failure raised in the test that checks them."""
    if isinstance(found, BaseException):
        raise found
    return found


async def both_scenarios(cluster: LocalCluster, image: str) -> Outcome:
    leader = await cluster.leader_index()
    joined = asyncio.Event()  # the joiner came in through the leader, which may die now
    cron, rebalance = await asyncio.gather(
        cron_scenario(cluster, image, leader, joined),
        rebalance_scenario(cluster, image, leader, joined),
        return_exceptions=True,
    )
    return Outcome(cron, rebalance)


async def cron_scenario(
    cluster: LocalCluster, image: str, leader: int, joined: asyncio.Event
) -> CronSeen:
    created = time.time()
    api = cluster.nodes[leader].api
    must(
        shoal(
            "cron",
            "create",
            "--name",
            "beat",
            "--schedule",
            f"* * * * * */{PERIOD}",
            "--history",
            "10",
            image,
            "true",
            addr=api,
        )
    )

    async def runs(via: int, at_least: int) -> list[dict] | None:
        found = (await cluster.get(via, "/v1/crons/beat"))["runs"]
        return found if len(found) >= at_least else None

    async def first_done() -> dict | None:
        found = await runs(leader, 1)
        return found[0] if found and found[0]["status"] == "complete" else None

    first = await wait_for(first_done, timeout=PERIOD + 30, what="the first run to complete")
    await asyncio.wait_for(joined.wait(), timeout=PERIOD + 30)
    assert await cluster.leader_index() == leader, "the leader changed before it was killed"
    cluster.nodes[leader].kill9()
    killed_at = time.time()
    survivor = next(i for i in range(3) if i != leader)
    await cluster.leader_index(among=[i for i in range(3) if i != leader])

    async def last_done() -> bool:
        found = await runs(survivor, CRON_RUNS)
        return bool(found) and all(r["status"] == "complete" for r in found)

    await wait_for(last_done, timeout=PERIOD * CRON_RUNS + 30, what=f"{CRON_RUNS} runs")
    ended = time.time()
    jobs = [j for j in await cluster.get(survivor, "/v1/jobs") if j["cron"] == "beat"]
    detailed = [await cluster.get(survivor, f"/v1/jobs/{j['name']}") for j in jobs]
    return CronSeen((created, ended), killed_at, scheduled(first), detailed)


async def rebalance_scenario(
    cluster: LocalCluster, image: str, leader: int, joined: asyncio.Event
) -> RebalanceSeen:
    web_nodes = [i for i in range(3) if i != leader]  # they survive the leader's kill
    via = web_nodes[0]
    must(
        shoal(
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            str(REPLICAS),
            *httpd_service(
                image,
                "--constraint",
                f"node.hostname!={cluster.nodes[leader].name}",
                "--rebalance",
                "auto",
                "--max-unavailable",
                str(MAX_UNAVAILABLE),
            ),
            addr=cluster.nodes[via].api,
        )
    )

    async def tasks() -> list[dict]:
        return await cluster.get(via, "/v1/tasks?service=web")

    async def spread(counts: list[int]) -> bool:
        running = [t for t in live(await tasks()) if t["health"] == "healthy"]
        return sorted(Counter(t["node_name"] for t in running).values()) == counts

    await wait_for(lambda: spread([3, 3]), 90, "6 healthy tasks on 2 nodes")

    async def both_serving() -> bool:
        return all([await serving(cluster, i, REPLICAS) for i in web_nodes])

    await wait_for(both_serving, 60, "both nodes to serve 6 endpoints")
    found = RebalanceSeen([], Counter())
    stop = asyncio.Event()
    load = asyncio.ensure_future(hammer([cluster.nodes[i].address for i in web_nodes], stop))
    watch = asyncio.ensure_future(count_down(tasks, found, stop))
    try:
        await cluster.add(cluster.nodes[JOINER])
        found.joined_at = time.time()
        joined.set()
        await wait_for(lambda: spread([2, 2, 2]), 120, "2 healthy tasks on each of 3 nodes")
        found.spread_at = time.time()
        await asyncio.sleep(3.0)  # the moved tasks' drain and stop, under load too
    finally:
        stop.set()
        found.requests, found.failures = await load
        await watch
    final = await tasks()
    found.moved = [t for t in final if "(rebalanced)" in t["message"]]
    found.placed = Counter(t["node_name"] for t in live(final))
    return found


async def count_down(
    tasks: Callable[[], Awaitable[list[dict]]], found: RebalanceSeen, stop: asyncio.Event
) -> None:
    """Look at the service's tasks until `stop`: how many replicas are down each time (slots
    without a running, healthy task)."""
    while not stop.is_set():
        try:
            up = {t["slot"] for t in live(await tasks()) if t["health"] == "healthy"}
            found.down.append(REPLICAS - len(up))
        except (ApiError, Unreachable):
            found.unanswered_looks += 1
        await asyncio.sleep(0.1)


def test_a_cron_fires_each_time_once_through_a_leader_kill(outcome):
    cron = seen(outcome.cron)
    start, end = cron.window
    times = list(range(math.floor(start / PERIOD + 1) * PERIOD, math.floor(end) + 1, PERIOD))
    by_time = defaultdict(list)
    for job in cron.jobs:
        by_time[scheduled(job)].append(job)
    ran = {when: [t for j in jobs for t in j["tasks"]] for when, jobs in by_time.items()}
    print(
        f"cron window {end - start:.0f} s, leader killed {cron.killed_at - cron.first_run:.1f} s "
        f"after the first run's time; tasks per scheduled time: "
        f"{ {when: len(tasks) for when, tasks in sorted(ran.items())} }"
    )
    assert len(times) in (CRON_RUNS, CRON_RUNS + 1), times
    assert sorted(by_time) == times, "a scheduled time was missed, or one out of the window"
    assert times[0] == cron.first_run < cron.killed_at < cron.first_run + PERIOD
    for when, jobs in by_time.items():
        assert len(jobs) == 1, f"{when} fired {len(jobs)} times"
        (job,) = jobs
        assert (job["status"], job["succeeded"], job["failed"]) == ("complete", 1, 0), job
        assert [t["exit_code"] for t in ran[when] if t["state"] == "complete"] == [0], ran[when]


def test_a_joining_node_takes_two_of_six_tasks_within_the_budget_without_a_failed_request(
    outcome,
):
    found = seen(outcome.rebalance)
    print(
        f"{found.requests} requests while tasks moved, {len(found.failures)} failed; "
        f"{len(found.down)} looks at the API (most replicas down: {max(found.down)}, "
        f"{found.unanswered_looks} unanswered); running per node: {dict(found.placed)}"
    )
    assert sorted(found.placed.values()) == [2, 2, 2] and found.placed[f"n{JOINER + 1}"] == 2
    assert (
        sorted(t["message"] for t in found.moved)
        == [f"moved to node n{JOINER + 1} (rebalanced)"] * 2
    )
    assert found.down and max(found.down) <= MAX_UNAVAILABLE
    assert found.requests > 0 and found.failures == []
