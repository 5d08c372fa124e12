"""A write forwarded to a leader that stops answering (SIGSTOP) goes to the new leader as soon
as the forwarding node knows it, instead of waiting out the 5 s write deadline."""

from __future__ import annotations

import signal
import time

import pytest

from tests.integration.cluster_support import until_voters

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cluster(fresh):
    return fresh(3)


async def test_a_write_forwarded_to_a_paused_leader_fails_over_to_the_new_one(cluster):
    await cluster.start()
    await until_voters(cluster, 3)
    leader = await cluster.leader_index()
    via = next(i for i in range(3) if i != leader)
    cluster.nodes[leader].signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        async with cluster.nodes[via].client(timeout=15) as client:
            node = await client.patch("/v1/nodes/n1", {"add_labels": {"failover": "yes"}})
        took = time.monotonic() - started
    finally:
        cluster.nodes[leader].signal(signal.SIGCONT)
    assert node["labels"]["failover"] == "yes"
    # An election takes 0.4-0.8 s after the last heartbeat; the write deadline is 5 s.
    assert took < 3.0, f"the forwarded write took {took:.2f} s"
