"""A UDP port published on the routing mesh answers at every node of a real 3-node cluster,
also the ones without a replica, with each data plane."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from node.devcluster.localcluster import LocalCluster, wait_for
from tests.integration.mesh_support import (
    create,
    remove_leftover_tables,
    remove_leftover_tasks,
    require_nft,
)

pytestmark = pytest.mark.timeout(120)

PUBLISHED = 18053
# Echoes each datagram after its task id, on the host port the runtime gave target 53/udp.
# Like any UDP server bound to every address, it answers from the address it was asked at
# (IP_PKTINFO, 8 in linux/in.h): the nodes share loopback, where the kernel would otherwise
# answer from 127.0.0.1, which the proxy's socket connected to the task rightly ignores.
SERVER = """\
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 8, 1)
s.bind(("", int(os.environ["SHOAL_PORT_53_UDP"])))
while True:
    data, ancillary, _, peer = s.recvmsg(2048, socket.CMSG_SPACE(12))
    s.sendmsg([os.environ["SHOAL_TASK_ID"].encode() + b" " + data], ancillary, 0, peer)
"""


def ask(address: str, payload: bytes) -> bytes | None:
    """One datagram to the published port; the answer, or None after a short wait."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(payload, (address, PUBLISHED))
        try:
            return s.recv(2048)
        except TimeoutError:
            return None


@pytest.fixture(params=["proxy", "nft"])
async def cluster(request, tmp_path):
    if request.param == "nft":
        require_nft()
    cluster = LocalCluster(
        str(tmp_path), 3, ["--runtime", "process", "--lb-dataplane", request.param]
    )
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()
        await remove_leftover_tasks(cluster)
        remove_leftover_tables(cluster)
        print(cluster.logs())


async def test_a_udp_port_answers_through_the_mesh_on_a_node_without_a_replica(cluster):
    await create(
        cluster,
        {
            "name": "echo",
            "image": "process",
            "command": [sys.executable, "-c", SERVER],
            "constraints": ["node.hostname==n1"],
            "ports": [f"{PUBLISHED}:53/udp"],
        },
    )
    elsewhere = cluster.nodes[2].address

    async def answered() -> bool:
        return await asyncio.to_thread(ask, elsewhere, b"ping") is not None

    await wait_for(answered, 60, "the echo task to answer at n3 through the mesh")
    answers = [await asyncio.to_thread(ask, elsewhere, f"q{i}".encode()) for i in range(5)]
    task_ids = {a.split(b" ")[0] for a in answers if a is not None}
    assert [a.split(b" ", 1)[1] for a in answers if a is not None] == [
        f"q{i}".encode() for i in range(5)
    ]
    assert len(task_ids) == 1
