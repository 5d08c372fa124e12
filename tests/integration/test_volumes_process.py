"""A named volume with the process runtime on a real 3-node cluster: what a task wrote is
there for its replacement after the task is killed, the slot stays on the node holding the
data, and `shoal volume ls` shows where the volume is."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from node.runtime.mounts import VOLUMES_DIR
from tests.integration.cluster_support import (
    SlotWatch,
    live,
    must,
    process_cluster,
    running_slots,
    shoal,
)
from tests.integration.test_self_healing import QUICK_RESTART, by_id, create, node_named, process_of

pytestmark = pytest.mark.timeout(120)

# Each task appends its id and the volume's directory to a file in the volume (through the
# link in its working directory), then stays up.
WRITER = (
    "process",
    "sh",
    "-c",
    'echo "$SHOAL_TASK_ID $SHOAL_VOLUME_DATA" >> data/ids; exec sleep 600',
)


@pytest.fixture
def trio(tmp_path):
    with process_cluster(str(tmp_path), 3) as cluster:
        asyncio.run(cluster.start())
        yield cluster


async def test_a_killed_task_is_replaced_on_its_node_and_finds_the_volume_data(trio):
    create(
        trio,
        "db",
        "--mount",
        "type=volume,source=dbdata,target=/var/lib/data",
        *QUICK_RESTART,
        *WRITER,
    )
    watch = SlotWatch(trio, "db")
    (first,) = live(await watch.until(running_slots(1), "the task running"))
    home = node_named(trio, first["node_name"])
    pid, _ = process_of(home, first["id"])

    os.killpg(pid, signal.SIGKILL)

    def replaced(tasks: list[dict]) -> bool:
        return running_slots(1)(tasks) and live(tasks)[0]["id"] != first["id"]

    tasks = await watch.until(replaced, "a replacement running")
    (successor,) = live(tasks)
    assert by_id(tasks, first["id"])["state"] == "failed"
    assert successor["node_name"] == home.name
    volume = os.path.join(home.data_dir, VOLUMES_DIR, "dbdata")
    with open(os.path.join(volume, "ids")) as written:
        assert written.read().splitlines() == [
            f"{first['id']} {volume}",
            f"{successor['id']} {volume}",
        ]

    listed = json.loads(must(shoal("volume", "ls", "-o", "json", addr=trio.nodes[2].api)))
    assert listed == [{"name": "dbdata", "services": ["db"], "nodes": [home.name]}]
    table = must(shoal("volume", "ls", addr=trio.nodes[1].api))
    assert "dbdata" in table and home.name in table
    watch.assert_never_doubled()
