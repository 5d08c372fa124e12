"""Rolling updates with a real Docker Engine on a 3-node cluster: a busybox httpd service
(3 replicas, HTTP health check, published through every node's load-balancer proxy) is
updated to a second image tag and rolled back under continuous requests with no failed
request (each replaced task drains for its stop delay before its container stops); a canary
update runs a container of the new image beside the old ones, both answer through the mesh,
and a promote leaves 3 of the new image, with no failed request; and an update to an image
that does not exist rolls back by itself."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections import Counter

import docker
import pytest

from node.devcluster.localcluster import LocalCluster, wait_for
from tests.e2e.docker_support import (
    containers_of,
    docker_cluster,
    httpd_service,
    remove_containers,
)
from tests.integration.cluster_support import live, must, shoal
from tests.integration.mesh_support import all_serving, fetch, new_session
from tests.integration.test_rollout_mesh import hammer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MISSING_IMAGE = "no-such-image:404"


@pytest.fixture(scope="module")
def second_image(busybox_image, engine):
    """The busybox test image under a second tag, so that an update really changes the image."""
    tag = busybox_image.rsplit(":", 1)[0] + ":rollout-2"
    subprocess.run(["docker", "tag", busybox_image, tag], check=True, capture_output=True)
    yield tag
    subprocess.run(["docker", "rmi", tag], capture_output=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, engine):
    with docker_cluster(
        str(tmp_path_factory.mktemp("rollout")), engine, "--lb-dataplane", "proxy"
    ) as cluster:
        yield cluster


@pytest.fixture
def web(cluster, engine, busybox_image):
    """A 3-replica httpd service published on PUBLISHED, start-first updates one at a time."""
    name = f"web-{uuid.uuid4().hex[:8]}"
    must(
        shoal(
            "service",
            "create",
            "--name",
            name,
            "--replicas",
            "3",
            *httpd_service(
                busybox_image,
                "--update-order",
                "start-first",
                "--update-parallelism",
                "1",
                "--update-monitor",
                "2s",
            ),
            addr=cluster.nodes[0].api,
        )
    )
    yield name
    shoal("service", "rm", name, addr=cluster.nodes[0].api)
    remove_containers(engine, f"shoal.service={name}")


def images(engine: docker.DockerClient, name: str) -> list[str]:
    """The images of the service's running containers."""
    return sorted(
        c.attrs["Config"]["Image"] for c in containers_of(engine, name) if c.status == "running"
    )


async def until_rollout(cluster: LocalCluster, name: str, state: str, image: str) -> dict:
    async def reached() -> dict | None:
        service = await cluster.get(1, f"/v1/services/{name}")
        rollout = service["rollout"] or {}
        tasks = live(await cluster.get(1, f"/v1/tasks?service={name}"))
        healthy = len(tasks) == 3 and all(t["health"] == "healthy" for t in tasks)
        done = rollout.get("state") == state and service["spec"]["image"] == image and healthy
        return service if done else None

    return await wait_for(reached, timeout=120, what=f"rollout {state} on {image}")


async def test_an_update_drops_no_request_and_rollback_restores_the_image(
    cluster,
    engine,
    web,
    busybox_image,
    second_image,
):
    await wait_for(lambda: _serving(cluster, web), timeout=60, what="3 healthy replicas")
    stop = asyncio.Event()
    load = asyncio.ensure_future(hammer([n.address for n in cluster.nodes], stop))
    try:
        await asyncio.sleep(1.0)
        must(shoal("service", "update", web, "--image", second_image, addr=cluster.nodes[1].api))
        await until_rollout(cluster, web, "completed", second_image)
        await wait_for(lambda: _images_are(engine, web, second_image), 60, "old containers gone")
        assert images(engine, web) == [second_image] * 3
        # The rollback replaces every task again: it is under the same load.
        must(shoal("service", "rollback", web, addr=cluster.nodes[2].api))
        service = await until_rollout(cluster, web, "rolled_back", busybox_image)
        await wait_for(lambda: _images_are(engine, web, busybox_image), 60, "the first image back")
        await asyncio.sleep(1.0)  # requests right after the last old container stopped
    finally:
        stop.set()
        done, failures = await load
    print(f"{done} requests through the load balancer during the update and the rollback")
    assert service["rollout"]["kind"] == "rollback"
    assert done > 0 and failures == []


async def test_a_canary_answers_beside_the_old_containers_then_promote_drops_no_request(
    cluster, engine, web, busybox_image, second_image
):  # noqa: F811
    await wait_for(lambda: _serving(cluster, web), timeout=60, what="3 healthy replicas")
    addresses = [n.address for n in cluster.nodes]
    stop = asyncio.Event()
    load = asyncio.ensure_future(hammer(addresses, stop))
    try:
        must(
            shoal(
                "service",
                "update",
                web,
                "--image",
                second_image,
                "--update-canary",
                "1",
                addr=cluster.nodes[1].api,
            )
        )
        await wait_for(lambda: _canary_serving(cluster, web), 60, "the canary beside 3 old tasks")
        await wait_for(lambda: all_serving(cluster, 4), 30, "the canary in every load balancer")
        assert images(engine, web) == sorted([busybox_image] * 3 + [second_image])
        assert "canary" in must(shoal("service", "status", web, addr=cluster.nodes[2].api))
        version = {
            t["id"]: t["spec_version"] for t in await cluster.get(0, f"/v1/tasks?service={web}")
        }
        served: Counter = Counter()
        async with new_session() as session:
            for _ in range(12):
                for address in addresses:
                    served[version.get(await fetch(session, address))] += 1
        print(f"canary phase: requests answered by version {dict(served)}")
        assert served[1] and served[2] and served[1] + served[2] == 36  # old and new both answer
        must(shoal("service", "promote", web, addr=cluster.nodes[0].api))
        await until_rollout(cluster, web, "completed", second_image)
        await wait_for(lambda: _images_are(engine, web, second_image), 60, "old containers gone")
        await asyncio.sleep(1.0)  # requests right after the last old container stopped
    finally:
        stop.set()
        done, failures = await load
    print(f"{done} requests through the load balancer during the canary update")
    assert done > 0 and failures == []


async def _canary_serving(cluster: LocalCluster, name: str) -> bool:
    service = await cluster.get(0, f"/v1/services/{name}")
    tasks = live(await cluster.get(0, f"/v1/tasks?service={name}"))
    return (
        (service["rollout"] or {}).get("state") == "canary"
        and len(tasks) == 4
        and sum(t["canary"] for t in tasks) == 1
        and all(t["health"] == "healthy" for t in tasks)
    )


async def test_an_update_to_a_missing_image_rolls_back_by_itself(
    cluster, engine, web, busybox_image
):
    await wait_for(lambda: _serving(cluster, web), timeout=60, what="3 healthy replicas")
    must(
        shoal(
            "service",
            "update",
            web,
            "--image",
            MISSING_IMAGE,
            "--update-failure-action",
            "rollback",
            addr=cluster.nodes[0].api,
        )
    )
    service = await until_rollout(cluster, web, "rolled_back", busybox_image)
    assert service["rollout"]["kind"] == "rollback"
    assert "failed" in service["rollout"]["reason"]
    await wait_for(lambda: _images_are(engine, web, busybox_image), 60, "the first image running")
    status = must(shoal("service", "status", web, addr=cluster.nodes[1].api))
    assert "rolled_back" in status


async def _serving(cluster: LocalCluster, name: str) -> bool:
    tasks = live(await cluster.get(0, f"/v1/tasks?service={name}"))
    return len(tasks) == 3 and all(t["health"] == "healthy" for t in tasks)


async def _images_are(engine: docker.DockerClient, name: str, image: str) -> bool:
    return images(engine, name) == [image] * 3
