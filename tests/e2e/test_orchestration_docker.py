"""Orchestration end to end with a real Docker Engine: three `shoal node` processes on
loopback (`--runtime docker`) run a busybox httpd service as containers with its memory
limit, replace a container removed by hand, adopt their containers after a node is killed
and restarted, restart a task whose health check fails, and show a missing image's error in
`shoal service ps`."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable

import docker
import pytest

from node.devcluster.localcluster import LocalCluster, wait_for
from node.runtime.model import LABEL_NODE, LABEL_TASK
from tests.e2e.docker_support import containers_of, node_id
from tests.integration.cluster_support import (
    SETTLE,
    SlotWatch,
    live,
    must,
    running_slots,
    running_spread,
    shoal,
    until_node,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

HTTPD = ("httpd", "-f", "-p", "80", "-h", "/tmp")
# Replace at once: these tests are about whether a task is replaced, not when.
QUICK_RESTART = ("--restart-delay", "0.1s")
MISSING_IMAGE = "no-such-image:404"


def create(cluster: LocalCluster, name: str, *flags: str) -> None:
    must(shoal("service", "create", "--name", name, *flags, addr=cluster.nodes[0].api))


def settled(engine: docker.DockerClient, count: int) -> Callable[[list[dict]], bool]:
    """`count` tasks running, one per slot, each with exactly one running container, and no
    other container of the service on the engine."""

    def holds(tasks: list[dict]) -> bool:
        if not running_slots(count)(tasks):
            return False
        found = containers_of(engine, tasks[0]["service"])
        return sorted(c.labels[LABEL_TASK] for c in found) == sorted(
            t["id"] for t in live(tasks)
        ) and all(c.status == "running" for c in found)

    return holds


def container_of(engine: docker.DockerClient, service: str, task_id: str):
    (found,) = [c for c in containers_of(engine, service) if c.labels[LABEL_TASK] == task_id]
    return found


async def http_status_line(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        return await reader.readline()
    finally:
        writer.close()


async def test_httpd_replicas_run_as_containers_with_their_memory_limit(
    shared, engine, service_name, busybox_image
):
    name = service_name(shared, "web")
    create(
        shared,
        name,
        "--replicas",
        "3",
        "--limit-memory",
        "64M",
        "-p",
        "8080:80",
        busybox_image,
        *HTTPD,
    )
    watch = SlotWatch(shared, name)
    await watch.until(running_spread(3), "3 tasks running on 3 nodes")
    tasks = await watch.until(settled(engine, 3), "3 running containers")

    found = containers_of(engine, name)
    assert len(found) == 3
    assert [c.attrs["HostConfig"]["Memory"] for c in found] == [64 << 20] * 3
    # One container on each node.
    assert {c.labels[LABEL_NODE] for c in found} == {node_id(n) for n in shared.nodes}
    for task in live(tasks):  # each serves HTTP on its own node's address
        (binding,) = task["endpoint"]["ports"]
        assert binding["target"] == 80
        status = await http_status_line(task["endpoint"]["address"], binding["host_port"])
        assert status.startswith(b"HTTP/1."), status
    watch.assert_never_doubled()


async def test_a_container_removed_by_hand_is_replaced(shared, engine, service_name, busybox_image):
    name = service_name(shared, "web")
    create(shared, name, "--replicas", "3", *QUICK_RESTART, busybox_image, *HTTPD)
    watch = SlotWatch(shared, name)
    tasks = await watch.until(settled(engine, 3), "3 running containers")
    removed = live(tasks)[0]

    subprocess.run(
        ["docker", "rm", "-f", container_of(engine, name, removed["id"]).id],
        check=True,
        capture_output=True,
    )

    def replaced(tasks: list[dict]) -> bool:
        return settled(engine, 3)(tasks) and removed["id"] not in {t["id"] for t in live(tasks)}

    tasks = await watch.until(replaced, "3 running containers again")
    gone = next(t for t in tasks if t["id"] == removed["id"])
    assert (gone["state"], gone["desired"]) == ("failed", "shutdown")
    (successor,) = [t for t in live(tasks) if t["slot"] == removed["slot"]]
    assert successor["restarts"] == 1
    watch.assert_never_doubled()


async def test_a_killed_and_restarted_node_adopts_its_containers(
    own, engine, service_name, busybox_image
):
    name = service_name(own, "web")
    create(own, name, "--replicas", "3", busybox_image, *HTTPD)
    watch = SlotWatch(own, name)
    tasks = await watch.until(settled(engine, 3), "3 running containers")
    leader = await own.leader_index()
    victim = next(n for i, n in enumerate(own.nodes) if i != leader)
    (its_task,) = [t for t in live(tasks) if t["node_name"] == victim.name]
    its_container = container_of(engine, name, its_task["id"])

    victim.kill9()
    victim.start()  # at once: the cluster may or may not see it down meanwhile
    # A task only the restarted agent can start: once it runs, that agent has adopted what
    # it found and acted on it (a duplicate would already be starting).
    marker = service_name(own, "marker")
    create(own, marker, "--constraint", f"node.hostname=={victim.name}", busybox_image, *HTTPD)
    await SlotWatch(own, marker).until(running_slots(1), f"a task started by {victim.name}")

    tasks = await watch.until(settled(engine, 3), "exactly 3 running containers")
    await until_node(own, victim.name, "ready", via=leader)
    if its_task["id"] in {t["id"] for t in live(tasks)}:
        # It came back before it was replaced: its agent adopted the very same container.
        still = container_of(engine, name, its_task["id"])
        assert (still.id, still.attrs["State"]["StartedAt"]) == (
            its_container.id,
            its_container.attrs["State"]["StartedAt"],
        )
    else:
        # It was replaced while down: its returning agent found its container and removed it.
        assert its_container.id not in {c.id for c in containers_of(engine, name)}
    watch.assert_never_doubled()


async def test_a_failing_health_check_restarts_the_task(shared, service_name, busybox_image):
    name = service_name(shared, "sick")
    create(
        shared,
        name,
        "--health-cmd",
        "false",
        "--health-interval",
        "0.5s",
        "--health-retries",
        "1",
        *QUICK_RESTART,
        "--restart-max-attempts",
        "1",
        "--stop-grace-period",
        "1s",
        busybox_image,
        *HTTPD,
    )

    def restarted(tasks: list[dict]) -> bool:
        return any(t["restarts"] == 1 for t in tasks) and any(
            t["restarts"] == 0 and t["state"] == "failed" for t in tasks
        )

    tasks = await SlotWatch(shared, name).until(restarted, "the failed task replaced")
    (first,) = [t for t in tasks if t["restarts"] == 0]
    assert (first["state"], first["health"], first["desired"]) == (
        "failed",
        "unhealthy",
        "shutdown",
    )
    assert first["error"] == "health check failed: the runtime's health check reports it unhealthy"
    assert first["message"] == "task failed: restarted"
    (second,) = [t for t in tasks if t["restarts"] == 1]
    assert second["slot"] == first["slot"]


async def test_a_missing_image_shows_its_error_in_service_ps(shared, service_name):
    name = service_name(shared, "gone")
    create(shared, name, MISSING_IMAGE)

    async def error_shown() -> str:
        ps = must(shoal("service", "ps", name, addr=shared.nodes[1].api))
        return ps if "cannot be pulled" in ps else ""

    ps = await wait_for(error_shown, timeout=SETTLE, what="the image error in service ps")
    assert f"image '{MISSING_IMAGE}' is not on this node and cannot be pulled" in ps, ps
