"""compose-test-cluster.yml end to end: the node image built with no registry, three nodes under
Docker Compose forming one cluster, a service running on the host's engine, and a teardown
that leaves nothing behind.

The base image is built once (debootstrap, about a minute) and kept; the node image is rebuilt
from this checkout on every run (seconds: the dependencies' layer is cached).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import require_docker, unavailable

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose-test-cluster.yml"
BASE_IMAGE = "shoal-base:bookworm"
NODE_IMAGE = "shoal-node:e2e"
NODES = ("node1", "node2", "node3")
# Bounds, not expectations: each wait ends as soon as its condition holds.
BUILD_TIMEOUT = 600.0
UP_TIMEOUT = 240.0
FORM_TIMEOUT = 90.0
RUN_TIMEOUT = 90.0


def _run(
    argv: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env
    )


def _must(done: subprocess.CompletedProcess, what: str) -> str:
    if done.returncode != 0:
        raise AssertionError(
            f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return done.stdout


def _image_exists(image: str) -> bool:
    return _run(["docker", "image", "inspect", image], 30).returncode == 0


def _build_images() -> None:
    if not _image_exists(BASE_IMAGE):
        if os.geteuid() != 0:
            unavailable(f"{BASE_IMAGE} is missing and building it (debootstrap) needs root")
        if shutil.which("debootstrap") is None:
            unavailable(f"{BASE_IMAGE} is missing and debootstrap is not installed")
        _must(
            _run([REPO / "deploy" / "build-base-image.sh", BASE_IMAGE], BUILD_TIMEOUT),
            "building the base image",
        )
    # The wheels must suit the image's Python 3.11: build them with the interpreter under test.
    env = dict(os.environ, PYTHON=sys.executable)
    _must(
        _run([REPO / "deploy" / "build-node-image.sh", NODE_IMAGE], BUILD_TIMEOUT, env),
        "building the node image",
    )


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Retry `check` until it returns a truthy value; AssertionError counts as 'not yet'."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except AssertionError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


@dataclass
class ComposeCluster:
    project: str
    node_ids: set[str] = field(default_factory=set)
    _containers: dict[str, str] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        env = dict(os.environ, SHOAL_IMAGE=NODE_IMAGE)
        return _run(["docker-compose", "-f", COMPOSE_FILE, "-p", self.project, *args], timeout, env)

    def container(self, service: str) -> str:
        if service not in self._containers:
            found = _must(self.compose("ps", "-q", service), f"finding {service}").strip()
            assert found, f"{service} has no container"
            self._containers[service] = found
        return self._containers[service]

    def exec(self, service: str, *argv: str) -> subprocess.CompletedProcess:
        return _run(["docker", "exec", self.container(service), *argv], 60)

    def shoal(self, service: str, *args: str) -> Any:
        """`shoal ARGS -o json` inside the node: through its socket, which needs no token."""
        return json.loads(
            _must(
                self.exec(service, "shoal", *args, "-o", "json"),
                f"shoal {' '.join(args)} on {service}",
            )
        )

    @contextlib.contextmanager
    def logs_on_failure(self) -> Iterator[None]:
        """A failed assertion inside carries the nodes' recent logs."""
        try:
            yield
        except AssertionError as exc:
            logs = self.compose("logs", "--no-color", "--tail", "60").stdout
            raise AssertionError(f"{exc}\n--- node logs ---\n{logs}") from None

    def remove_task_containers(self) -> None:
        """The containers the nodes started on the host's engine; only those of these nodes,
        since other clusters may share the engine."""
        for node_id in self.node_ids:
            found = _run(
                [
                    "docker",
                    "ps",
                    "-aq",
                    "--filter",
                    "label=shoal.managed=1",
                    "--filter",
                    f"label=shoal.node={node_id}",
                ],
                30,
            ).stdout.split()
            if found:
                _run(["docker", "rm", "-f", "-v", *found], 60)


@pytest.fixture(scope="module")
def compose_cluster() -> Iterator[ComposeCluster]:
    require_docker()
    if shutil.which("docker-compose") is None:
        unavailable("docker-compose is not installed (Debian: apt-get install docker-compose)")
    _build_images()
    cluster = ComposeCluster(f"shoale2e{uuid.uuid4().hex[:10]}")
    try:
        with cluster.logs_on_failure():
            _must(cluster.compose("up", "-d", timeout=UP_TIMEOUT), "docker-compose up")
        yield cluster
    finally:
        # Nodes first, so that no agent replaces the task containers removed next.
        cluster.compose("down", "-v", "--remove-orphans", "-t", "10", timeout=120)
        cluster.remove_task_containers()


def _formed(cluster: ComposeCluster) -> list[dict]:
    status = cluster.shoal("node1", "cluster", "status")
    assert status["leader"] is not None, "no leader yet"
    assert len(status["voters"]) == 3, f"voters: {status['voters']}"
    nodes = cluster.shoal("node1", "node", "ls")
    cluster.node_ids.update(n["id"] for n in nodes)
    return nodes


def test_three_nodes_form_one_cluster(compose_cluster: ComposeCluster) -> None:
    with compose_cluster.logs_on_failure():
        nodes = _wait(lambda: _formed(compose_cluster), FORM_TIMEOUT, "a leader and 3 voters")
    assert sorted(n["name"] for n in nodes) == list(NODES)
    assert {n["role"] for n in nodes} == {"voter"}
    # Every node answers for the same cluster and names the same leader.
    answers = [compose_cluster.shoal(name, "cluster", "status") for name in NODES]
    assert len({(a["cluster_id"], a["leader"]["id"]) for a in answers}) == 1


def test_service_runs_on_the_hosts_engine(
    compose_cluster: ComposeCluster, busybox_image: str
) -> None:
    _wait(lambda: _formed(compose_cluster), FORM_TIMEOUT, "a leader and 3 voters")
    script = "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"
    _must(
        compose_cluster.exec(
            "node1",
            "shoal",
            "service",
            "create",
            "--name",
            "hello",
            "--replicas",
            "2",
            "--publish",
            "target=80",
            busybox_image,
            "sh",
            "-c",
            script,
        ),
        "shoal service create",
    )

    def running() -> list[dict]:
        tasks = [
            t
            for t in compose_cluster.shoal("node1", "service", "ps", "hello")
            if t["desired"] == "running"
        ]
        assert [t["state"] for t in tasks] == ["running", "running"], tasks
        return tasks

    with compose_cluster.logs_on_failure():
        tasks = _wait(running, RUN_TIMEOUT, "2 running tasks of service hello")
    # Published on the network's gateway, each task answers from any node (node3 asks).
    for task in tasks:
        endpoint = task["endpoint"]
        url = f"http://{endpoint['address']}:{endpoint['ports'][0]['host_port']}/"
        fetch = (
            "import sys, urllib.request; "
            "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
        )
        answer = _must(compose_cluster.exec("node3", "python3", "-c", fetch, url), f"GET {url}")
        assert answer.strip() == "hello"
