"""End-to-end fixtures: a busybox image built locally (no registry is reachable in CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from tests.support import require_docker, unavailable

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
