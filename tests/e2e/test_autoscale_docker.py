"""Autoscaling with tasks as containers on the Docker Engine: a busybox httpd service with an
rps target goes from 1 to >= 3 containers under load through the routing mesh and back to 1
after the load and the scale-down cooldown."""

from __future__ import annotations

import asyncio

import docker
import pytest

from node.devcluster.localcluster import started_cluster
from node.runtime.model import LABEL_NODE
from tests.e2e.docker_support import remove_containers
from tests.integration.autoscale_support import FAST_METRICS, autoscale_flow
from tests.integration.mesh_support import HTTP_CHECK, PUBLISHED, WEB, node_ids

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# busybox httpd serving one page on port 80.
HTTPD = [
    "sh",
    "-c",
    'mkdir -p /www && echo "$SHOAL_TASK_ID" > /www/index.html && exec httpd -f -p 80 -h /www',
]


async def test_an_rps_target_scales_containers_up_under_load_and_back_down(tmp_path, busybox_image):
    engine = docker.from_env()  # after busybox_image, which checked that the engine answers
    spec = {
        **WEB,
        "constraints": [],
        "image": busybox_image,
        "command": HTTPD,
        "ports": [f"{PUBLISHED}:80"],
        "health": HTTP_CHECK,
    }
    try:
        async with started_cluster(
            str(tmp_path),
            3,
            [
                "--runtime",
                "docker",
                "--cpus",
                "4",
                "--memory",
                str(8 << 30),
                "--lb-dataplane",
                "proxy",
                *FAST_METRICS,
            ],
        ) as cluster:
            try:
                await autoscale_flow(cluster, spec)
            finally:
                cluster.stop()
                # Containers outlive their nodes by design: remove what the test left running.
                for node_id in node_ids(cluster):
                    await asyncio.to_thread(remove_containers, engine, f"{LABEL_NODE}={node_id}")
    finally:
        engine.close()
