"""Three `shoal node` processes on loopback running their tasks as containers of the local
Docker Engine, and the containers' cleanup (containers outlive their nodes by design); the
busybox httpd service that the routing-mesh tests send requests to."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import docker

from node import config as node_config
from node.devcluster.localcluster import LocalCluster, NodeProc
from node.runtime.model import LABEL_NODE, LABEL_SERVICE
from tests.integration.cluster_support import stop_nodes
from tests.integration.mesh_support import PUBLISHED

# Each task answers with its id, so a test can tell which task served a request.
SERVE = ("-c", "echo $SHOAL_TASK_ID > /tmp/index.html; exec httpd -f -p 80 -h /tmp")


def node_id(node: NodeProc) -> str:
    stored = node_config.load(node.data_dir)
    return stored.identity.node_id if stored and stored.identity else ""


def labelled(engine: docker.DockerClient, label: str) -> list:
    # ignore_removed: an agent may remove a container between the listing and its inspection.
    return engine.containers.list(all=True, filters={"label": label}, ignore_removed=True)


def containers_of(engine: docker.DockerClient, service: str) -> list:
    return labelled(engine, f"{LABEL_SERVICE}={service}")


def remove_containers(engine: docker.DockerClient, label: str, tries: int = 50) -> None:
    """Remove the containers with `label`, also those an agent is removing meanwhile."""
    for _ in range(tries):
        found = labelled(engine, label)
        if not found:
            return
        for container in found:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: its removal is already under way
                    raise
        time.sleep(0.2)
    raise AssertionError(f"containers labelled {label} are still there after {tries} tries")


def httpd_service(image: str, *flags: str) -> list[str]:
    """`shoal service create` arguments (after --name and --replicas) of a busybox httpd
    service published on PUBLISHED through the routing mesh, health-checked over HTTP every
    half second, its tasks stopped within 2 s: `flags` come before the image."""
    return [
        "-p",
        f"{PUBLISHED}:80",
        "--health-http",
        "/",
        "--health-interval",
        "0.5s",
        "--health-timeout",
        "2s",
        "--restart-delay",
        "0.5s",
        "--stop-grace-period",
        "2s",
        *flags,
        "--entrypoint",
        "/bin/sh",
        image,
        *SERVE,
    ]


@contextlib.contextmanager
def docker_cluster(
    base_dir: str,
    engine: docker.DockerClient,
    *extra_args: str,
    size: int = 3,
    started: int | None = None,
) -> Iterator[LocalCluster]:
    """A cluster of `size` nodes, the first `started` of them (default all) running."""
    cluster = LocalCluster(
        base_dir,
        size,
        ["--runtime", "docker", "--cpus", "4", "--memory", str(8 << 30), *extra_args],
    )
    try:
        asyncio.run(cluster.start(count=started))
        yield cluster
    finally:
        stop_nodes(cluster)
        # Containers outlive their nodes by design: remove every one these nodes made.
        for nid in filter(None, map(node_id, cluster.nodes)):
            remove_containers(engine, f"{LABEL_NODE}={nid}")
        print(cluster.logs())
