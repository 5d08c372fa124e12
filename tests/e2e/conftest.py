"""End-to-end fixtures: a busybox image built locally (no registry is reachable in CI), the
Docker Engine and clusters running on it, and the multi-host bed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator

import docker
import pytest

from node.devcluster.localcluster import LocalCluster
from node.runtime.model import LABEL_SERVICE
from tests.e2e.docker_support import docker_cluster, remove_containers
from tests.integration.cluster_support import shoal
from tests.netbed.bed import NetBed
from tests.support import require_docker, require_netbed, unavailable

BUSYBOX_IMAGE = "shoal-test/busybox:1"


def _image_exists(image: str) -> bool:
    return (
        subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
    )


def _build_busybox(image: str) -> None:
    """A root filesystem of one static busybox and its applet links, made an image by
    `docker import`: about 2 MB, built in under a second."""
    busybox = shutil.which("busybox")
    if busybox is None:
        unavailable("busybox (Debian's busybox-static) is not installed")
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    with tempfile.TemporaryDirectory() as root:
        bin_dir = os.path.join(root, "bin")
        os.makedirs(bin_dir)
        shutil.copy2(busybox, os.path.join(bin_dir, "busybox"))
        for applet in applets:
            if applet != "busybox":
                os.symlink("busybox", os.path.join(bin_dir, applet))
        os.makedirs(os.path.join(root, "tmp"))
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "-c", 'CMD ["/bin/sh"]', "-", image],
            stdin=tar.stdout,
            check=True,
            capture_output=True,
        )
        tar.stdout.close()
        if tar.wait() != 0:
            raise RuntimeError(f"tar of the busybox root filesystem failed ({tar.returncode})")


@pytest.fixture(scope="session")
def busybox_image() -> str:
    """The tag of a local busybox image (`CMD ["/bin/sh"]`), built once when missing."""
    require_docker()
    if shutil.which("docker") is None:
        unavailable("the docker command-line client is not installed")
    if not _image_exists(BUSYBOX_IMAGE):
        _build_busybox(BUSYBOX_IMAGE)
    return BUSYBOX_IMAGE


@pytest.fixture(scope="module")
def engine(busybox_image):
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory, engine):
    """One cluster for the tests that leave its nodes as they found them."""
    with docker_cluster(str(tmp_path_factory.mktemp("shared")), engine) as cluster:
        yield cluster


@pytest.fixture
def own(tmp_path, engine):
    """A cluster of its own, for a test that kills a node."""
    with docker_cluster(str(tmp_path), engine) as cluster:
        yield cluster


@pytest.fixture
def service_name(engine) -> Iterator[Callable[[LocalCluster, str], str]]:
    """`service_name(cluster, stem)`: a name no other service on this engine has (containers
    are counted by it); the service and its containers go when the test ends."""
    made: list[tuple[LocalCluster, str]] = []

    def make(cluster: LocalCluster, stem: str) -> str:
        made.append((cluster, f"{stem}-{uuid.uuid4().hex[:8]}"))
        return made[-1][1]

    yield make
    for cluster, name in made:
        running = [n for n in cluster.nodes if n.running]
        if running:  # so that no agent replaces what is removed below
            shoal("service", "rm", name, addr=running[0].api)
        remove_containers(engine, f"{LABEL_SERVICE}={name}")


@pytest.fixture
def netbed_factory(tmp_path) -> Iterator[Callable[[int], NetBed]]:
    """`netbed_factory(n)` builds an n-host bed whose logs land in the test's tmp_path; every
    bed is closed after the test, passed or failed."""
    require_netbed()
    beds: list[NetBed] = []

    def build(hosts: int) -> NetBed:
        bed = NetBed.create(hosts, workdir=tmp_path / f"bed{len(beds)}")
        beds.append(bed)
        return bed

    yield build
    for bed in reversed(beds):
        bed.close()
