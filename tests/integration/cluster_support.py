"""Helpers for orchestration tests on real clusters: the CLI as an operator runs it, task
queries through the API, and a watch that checks an invariant on every look it takes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from node.devcluster.localcluster import (
    EQUAL_PROCESS_NODES,
    LocalCluster,
    NodeProc,
    api_token_for,
    ca_for,
    wait_for,
)
from node.runtime import ProcessDriver

# Bounds on waits, not expectations: each wait ends as soon as its condition holds.
SETTLE = 45.0


def shoal(*argv: str, addr: str) -> subprocess.CompletedProcess:
    """`shoal ARGV...` against `addr`, as an operator elsewhere runs it: with the API token."""
    return subprocess.run(
        [sys.executable, "-m", "node", *argv[:2], "--addr", addr, *argv[2:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, SHOAL_TOKEN=api_token_for(addr), SHOAL_CA=ca_for(addr)),
    )


def must(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"{done.args} failed ({done.returncode}): {done.stderr}"
    return done.stdout


async def tasks_of(cluster: LocalCluster, service: str, via: int | None = None) -> list[dict]:
    """The service's tasks, asked of node `via` (default: the first running node)."""
    if via is None:
        via = next(i for i, n in enumerate(cluster.nodes) if n.running)
    return await cluster.get(via, f"/v1/tasks?service={service}")


def live(tasks: list[dict]) -> list[dict]:
    """The tasks told to run that run."""
    return [t for t in tasks if t["desired"] == "running" and t["state"] == "running"]


def slot_key(task: dict) -> tuple[int, str]:
    """A replicated task's slot is its number; a global task's (slot 0) is its node."""
    return task["slot"], task["node_id"] if task["slot"] == 0 else ""


def slots_running_twice(tasks: list[dict]) -> list[tuple[int, str]]:
    """Slots with more than one task told to run and running: a slot must never run twice
    (but for a start-first move: the moved task serves until its copy is ready)."""
    running = live(tasks)
    moved = {t.get("replaces") for t in running}
    return [
        key
        for key, n in Counter(slot_key(t) for t in running if t["id"] not in moved).items()
        if n > 1
    ]


class SlotWatch:
    """Waits for conditions on a service's tasks while checking, on every look it takes, that
    no slot runs twice; a violation seen in passing fails the test at `assert_never_doubled`."""

    def __init__(self, cluster: LocalCluster, service: str) -> None:
        self.cluster, self.service = cluster, service
        self.doubled: list[tuple[list[tuple[int, str]], list[dict]]] = []

    async def until(
        self, condition: Callable[[list[dict]], object], what: str, timeout: float = SETTLE
    ) -> list[dict]:
        async def look() -> list[dict]:
            tasks = await tasks_of(self.cluster, self.service)
            doubled = slots_running_twice(tasks)
            if doubled:
                self.doubled.append((doubled, tasks))
            return tasks if condition(tasks) else []

        return await wait_for(look, timeout=timeout, what=what)

    def assert_never_doubled(self) -> None:
        assert not self.doubled, f"slots ran twice: {self.doubled[:1]}"


def running_slots(count: int) -> Callable[[list[dict]], bool]:
    """`count` tasks running, one per slot."""

    def holds(tasks: list[dict]) -> bool:
        running = live(tasks)
        return len(running) == count and len({slot_key(t) for t in running}) == count

    return holds


def running_spread(count: int) -> Callable[[list[dict]], bool]:
    """`count` tasks running, one per slot, each on its own node."""

    def holds(tasks: list[dict]) -> bool:
        return running_slots(count)(tasks) and len({t["node_id"] for t in live(tasks)}) == count

    return holds


async def node_status(cluster: LocalCluster, name: str, via: int) -> tuple[str, str]:
    node = await cluster.get(via, f"/v1/nodes/{name}")
    return node["status"], node["availability"]


async def until_node(
    cluster: LocalCluster, name: str, status: str, via: int, timeout: float = SETTLE
) -> None:
    async def reached() -> bool:
        return (await node_status(cluster, name, via))[0] == status

    await wait_for(reached, timeout=timeout, what=f"{name} {status}")


async def until_voters(cluster: LocalCluster, count: int, timeout: float = 60.0) -> None:
    """Every node of the cluster counts `count` voters."""

    async def counted() -> bool:
        return all(
            [
                len((await cluster.get(i, "/v1/cluster"))["voters"]) == count
                for i in range(len(cluster.nodes))
            ]
        )

    await wait_for(counted, what=f"{count} voters", timeout=timeout)


def stop_nodes(cluster: LocalCluster) -> None:
    """Stop every node at once: each may wait up to 2 s for its goodbye to spread."""
    with ThreadPoolExecutor(len(cluster.nodes)) as pool:
        list(pool.map(NodeProc.stop, cluster.nodes))


async def remove_task_processes(cluster: LocalCluster) -> None:
    """Task processes outlive their nodes by design: end what a stopped cluster left running."""
    for node in cluster.nodes:
        driver = ProcessDriver(node.data_dir)
        for seen in await driver.list_owned():
            await driver.remove(seen.task_id)


@contextlib.contextmanager
def process_cluster(base_dir: str, size: int) -> Iterator[LocalCluster]:
    # Equal, fixed capacities, so placement does not depend on this machine's size.
    cluster = LocalCluster(base_dir, size, EQUAL_PROCESS_NODES)
    try:
        yield cluster
    finally:
        stop_nodes(cluster)
        asyncio.run(remove_task_processes(cluster))
        print(cluster.logs())
