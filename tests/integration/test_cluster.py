"""A real control plane: node processes on loopback forming, failing over and restarting."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from consensus.protocol import PROTOCOL
from node.client import ApiError
from node.devcluster.localcluster import LocalCluster, NodeProc, wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def cluster_factory(tmp_path):
    made: list[LocalCluster] = []

    def make(size: int, extra_args: list[str] | None = None) -> LocalCluster:
        cluster = LocalCluster(str(tmp_path), size, extra_args)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()
        print(cluster.logs())  # shown by pytest only when the test failed


async def _label_everywhere(
    cluster: LocalCluster, indices: list[int], node_name: str, key: str, value: str
) -> bool:
    for i in indices:
        node = await cluster.get(i, f"/v1/nodes/{node_name}")
        if node["labels"].get(key) != value:
            return False
    return True


async def _set_label(cluster: LocalCluster, via: int, node_name: str, key: str, value: str):
    async with cluster.nodes[via].client() as client:
        return await client.patch(f"/v1/nodes/{node_name}", {"add_labels": {key: value}})


async def test_three_nodes_agree_on_leader_and_replicate_a_follower_write(cluster_factory):
    cluster = cluster_factory(3)
    await cluster.start()

    async def three_voters_everywhere() -> bool:
        for i in range(3):
            if len((await cluster.get(i, "/v1/cluster"))["voters"]) != 3:
                return False
        return True

    await wait_for(three_voters_everywhere, what="3 voters on every node")
    leader = await cluster.leader_index()
    leaders = {(await cluster.get(i, "/v1/cluster"))["leader"]["id"] for i in range(3)}
    assert len(leaders) == 1

    follower = next(i for i in range(3) if i != leader)
    node = await _set_label(cluster, follower, "n1", "zone", "a")
    # The write was acknowledged only after commit: the answering node already shows it.
    assert node["labels"]["zone"] == "a"
    await wait_for(
        lambda: _label_everywhere(cluster, [0, 1, 2], "n1", "zone", "a"),
        what="the label on every node",
    )

    # Each node announces its protocol level and release; the cluster speaks the lowest.
    async def every_node_heard(i: int) -> bool:
        levels = (await cluster.get(i, "/v1/cluster"))["protocol"]
        listed = await cluster.get(i, "/v1/nodes")
        return levels["minimum"] == PROTOCOL and all(
            n["protocol"] == PROTOCOL and n["version"] == levels["version"] != "" for n in listed
        )

    for i in range(3):
        await wait_for(lambda i=i: every_node_heard(i), what=f"n{i + 1} to hear every level")


async def test_leader_kill_failover_restart_and_whole_cluster_restart(cluster_factory):
    cluster = cluster_factory(3)
    await cluster.start()
    await wait_for(lambda: _voters(cluster, 0, 3), what="3 voters")
    old = await cluster.leader_index()
    cluster.nodes[old].kill9()
    survivors = [i for i in range(3) if i != old]

    new = await cluster.leader_index(survivors)
    assert new != old
    node = await wait_for(
        lambda: _set_label(cluster, survivors[0], "n2", "after", "failover"),
        what="a write committed by the new leader",
    )
    assert node["labels"]["after"] == "failover"

    # The killed node restarts from its data dir alone and catches up.
    cluster.nodes[old].start()
    await wait_for(
        lambda: _label_everywhere(cluster, [old], "n2", "after", "failover"),
        what="the restarted node to catch up",
    )

    # Whole cluster stopped and started again: the state is intact.
    await _set_label(cluster, survivors[1], "n3", "before", "restart")
    await wait_for(
        lambda: _label_everywhere(cluster, [0, 1, 2], "n3", "before", "restart"),
        what="the last write everywhere",
    )
    cluster.stop()
    for node in cluster.nodes:
        node.start()
    await wait_for(
        lambda: _label_everywhere(cluster, [0, 1, 2], "n3", "before", "restart"),
        what="state after a whole-cluster restart",
        timeout=60,
    )
    await wait_for(
        lambda: _label_everywhere(cluster, [0, 1, 2], "n2", "after", "failover"),
        what="older state after a whole-cluster restart",
    )
    assert await _voters(cluster, 0, 3)
    await cluster.leader_index()
    node = await wait_for(
        lambda: _set_label(cluster, 2, "n1", "still", "writable"), what="a write after the restart"
    )
    assert node["labels"]["still"] == "writable"


async def _voters(cluster: LocalCluster, i: int, count: int) -> bool:
    return len((await cluster.get(i, "/v1/cluster"))["voters"]) == count


async def test_six_nodes_wrong_token_and_minority_without_quorum(cluster_factory, tmp_path):
    cluster = cluster_factory(6)
    await cluster.start()

    async def five_plus_one() -> bool:
        nodes = await cluster.get(5, "/v1/nodes")
        roles = sorted(n["role"] for n in nodes)
        return roles == ["member"] + ["voter"] * 5

    await wait_for(five_plus_one, timeout=60, what="5 voters and 1 member")
    cluster_info = await cluster.get(0, "/v1/cluster")
    assert len(cluster_info["voters"]) == 5 and len(cluster_info["members"]) == 1

    # A wrong token is refused with a clear message and a non-zero exit.
    intruder = NodeProc(7, cluster.block, str(tmp_path))
    wrong = cluster.token[:-4] + ("AAAA" if not cluster.token.endswith("AAAA") else "BBBB")
    run = subprocess.run(
        intruder.command(cluster.nodes[0].api, wrong),
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, SHOAL_QUIET="1"),
    )
    assert run.returncode != 0
    assert "wrong or rotated join token" in run.stderr
    assert not any(n["name"] == "n7" for n in await cluster.get(0, "/v1/nodes"))

    # Freeze three of the five voters: the rest are a minority and must refuse writes fast.
    nodes = await cluster.get(0, "/v1/nodes")
    voter_names = sorted(n["name"] for n in nodes if n["role"] == "voter")
    frozen = [int(name[1:]) - 1 for name in voter_names[:3]]
    for i in frozen:
        cluster.nodes[i].signal(signal.SIGSTOP)
    try:
        awake = [i for i in range(6) if i not in frozen]
        for i in awake:
            # The client gives up after 10 s (Unreachable): a 503 proves the node answered
            # within its own 5 s write deadline instead of hanging.
            with pytest.raises(ApiError) as refused:
                await _set_label(cluster, i, f"n{i + 1}", "minority", "write")
            assert refused.value.status == 503
            assert "quorum" in refused.value.message
    finally:
        for i in frozen:
            cluster.nodes[i].signal(signal.SIGCONT)
    await cluster.leader_index()
    node = await wait_for(
        lambda: _set_label(cluster, 5, "n6", "healed", "yes"),
        what="writes after the majority is back",
    )
    assert node["labels"]["healed"] == "yes"


async def test_a_restarted_node_never_serves_an_older_state(cluster_factory):
    cluster = cluster_factory(1)
    await cluster.start()
    for n in range(300):
        await _set_label(cluster, 0, "n1", "seq", str(n))
    before = (await cluster.get(0, "/v1/cluster"))["applied"]
    cluster.nodes[0].kill9()
    cluster.nodes[0].start()
    # Until it holds its state again it says so; the very first answer from the state
    # already reflects the replayed journal.
    first = await wait_for(lambda: cluster.get(0, "/v1/nodes/n1"), what="the API after restart")
    assert first["labels"]["seq"] == "299"
    status = await cluster.get(0, "/v1/cluster")
    assert status["this_node"]["caught_up"] and status["applied"] >= before
