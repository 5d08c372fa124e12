"""A named volume with a real Docker Engine: a busybox task writes into it, its container is
removed by hand, and the replacement task (on the same node) finds the data; the volume is
a labelled Docker volume that outlives the containers."""

from __future__ import annotations

import contextlib
import uuid

import pytest

from node.devcluster.localcluster import wait_for
from node.runtime.mounts import LABEL_VOLUME
from tests.e2e.docker_support import containers_of
from tests.e2e.test_orchestration_docker import QUICK_RESTART, container_of, create, settled
from tests.integration.cluster_support import SETTLE, SlotWatch, live, must, shoal

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def volume_name(engine):
    name = f"shoal-test-{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(Exception):  # never made, or already gone: nothing to clean
        engine.volumes.get(name).remove(force=True)


async def test_a_replacement_container_finds_what_the_removed_one_wrote(
    shared,
    engine,
    service_name,
    volume_name,
    busybox_image,
):
    name = service_name(shared, "vol")
    # Each container appends its task id to a file in the volume, then serves.
    create(
        shared,
        name,
        "--mount",
        f"type=volume,source={volume_name},target=/data",
        *QUICK_RESTART,
        "--entrypoint",
        "/bin/sh",
        busybox_image,
        "-c",
        'echo "$SHOAL_TASK_ID" >> /data/ids; exec httpd -f -p 80 -h /tmp',
    )
    watch = SlotWatch(shared, name)
    (first,) = live(await watch.until(settled(engine, 1), "a running container"))
    volume = engine.volumes.get(volume_name)
    assert volume.attrs["Labels"] == {LABEL_VOLUME: volume_name}

    container_of(engine, name, first["id"]).remove(force=True)

    def replaced(tasks: list[dict]) -> bool:
        return settled(engine, 1)(tasks) and live(tasks)[0]["id"] != first["id"]

    (successor,) = live(await watch.until(replaced, "a replacement container"))
    assert successor["node_name"] == first["node_name"]
    replacement = container_of(engine, name, successor["id"])
    code, out = replacement.exec_run(["cat", "/data/ids"])
    assert code == 0 and out.decode().split() == [first["id"], successor["id"]]
    watch.assert_never_doubled()

    # The service goes and its agents remove its containers; the volume and its data stay.
    must(shoal("service", "rm", name, addr=shared.nodes[0].api))

    async def containers_gone() -> bool:
        return not containers_of(engine, name)

    await wait_for(containers_gone, timeout=SETTLE, what="the service's containers removed")
    assert engine.volumes.get(volume_name).attrs["Labels"] == {LABEL_VOLUME: volume_name}
    out = engine.containers.run(
        busybox_image,
        ["cat", "/data/ids"],
        remove=True,
        volumes={volume_name: {"bind": "/data", "mode": "ro"}},
    )
    assert out.decode().split() == [first["id"], successor["id"]]
