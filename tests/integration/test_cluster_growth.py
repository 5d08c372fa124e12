"""A cluster that has run long enough to compact its Raft log still grows.

Every test cluster used to be younger than one log compaction, so nothing showed that a node
joining later never received the state (the leader's snapshot never arrived). These tests
age clusters past compaction first: with a small threshold, then once at the default, and
add nodes after a leader change and after a voter restart; they also change the voter set
back and forth with members present.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from node.devcluster.localcluster import EQUAL_PROCESS_NODES, LocalCluster, NodeProc, wait_for
from tests.integration.cluster_support import live, stop_nodes, until_node
from tests.integration.test_self_healing import SLEEPER, create

pytestmark = pytest.mark.timeout(300)

# Compact after 100 entries, at most once a second: a few hundred writes age a cluster.
SMALL_SNAPSHOTS = ["--snapshot-entries", "100", "--snapshot-interval", "1"]
# The bound within which a new node must hold the cluster's state.
IN_STEP = 10.0
# Gossip declares a killed node dead in about 2 s (bench.liveness); the leader commits it.
SEEN_DOWN = 10.0


async def _leader(cluster: LocalCluster) -> NodeProc:
    return cluster.nodes[await cluster.leader_index()]


async def _write(cluster: LocalCluster, count: int, tag: str) -> None:
    """`count` label writes on the first node's record, 16 at a time, through the leader."""
    async with (await _leader(cluster)).client() as client:
        target = (await client.get("/v1/nodes"))[0]["id"]
        for start in range(0, count, 16):
            await asyncio.gather(
                *(
                    client.patch(f"/v1/nodes/{target}", {"add_labels": {tag: str(i)}})
                    for i in range(start, min(count, start + 16))
                )
            )


def _dumped(node: NodeProc, role: str = "voter") -> bool:
    return os.path.exists(os.path.join(node.data_dir, "raft", f"{role}.dump"))


async def _compacted(cluster: LocalCluster, timeout: float = 30.0) -> None:
    """Every running voter has written a snapshot since `since` (its log starts after it)."""
    since = time.time()

    async def fresh_dumps() -> bool:
        voters = [n for n in cluster.nodes if n.running and _dumped(n)]
        return bool(voters) and all(
            os.path.getmtime(os.path.join(n.data_dir, "raft", "voter.dump")) >= since
            for n in voters
        )

    await wait_for(fresh_dumps, timeout=timeout, what="a log compaction on every voter")


async def _state_of(node: NodeProc) -> tuple:
    """What a node holds: its applied index, the services and the nodes' labels."""
    async with node.client() as client:
        cluster = await client.get("/v1/cluster")
        services = sorted((s["name"], s["version"]) for s in await client.get("/v1/services"))
        labels = sorted(
            (n["name"], tuple(sorted(n["labels"].items()))) for n in await client.get("/v1/nodes")
        )
    return cluster["applied"], services, labels


async def _joins_in_step(cluster: LocalCluster, node: NodeProc) -> None:
    """`node` joins and, within IN_STEP seconds, holds exactly what the leader holds (by
    snapshot as a Raft replica: the entries it would need were compacted away; a member that
    follows a voter's feed gets a snapshot, or the entries while the voter's ring still holds
    them), and is ready."""
    node.start(join=cluster.nodes[0].api, token=cluster.token)
    started = time.monotonic()
    leader = await _leader(cluster)

    async def same_state() -> bool:
        mine = await _state_of(node)
        return mine == await _state_of(leader) and mine[0] > 0

    await wait_for(same_state, timeout=IN_STEP, what=f"{node.name} to hold the leader's state")
    with open(node.log_path, errors="replace") as log:
        text = log.read()
    if "following the voters' feed" not in text:
        assert "raft replica loaded a snapshot" in text, f"{node.name} got no snapshot"
    await until_node(
        cluster,
        node.name,
        "ready",
        via=cluster.nodes.index(leader),
        timeout=IN_STEP - (time.monotonic() - started) + 5,
    )


async def _runs_its_global_task(cluster: LocalCluster, names: set[str]) -> None:
    async def running_everywhere() -> bool:
        tasks = await cluster.get(0, "/v1/tasks?service=everywhere")
        return {t["node_name"] for t in live(tasks)} >= names

    await wait_for(running_everywhere, timeout=30, what=f"the global task on {sorted(names)}")


async def test_nodes_join_an_aged_cluster_after_leader_changes_and_restarts(fresh):
    cluster = fresh(6)
    for node in cluster.nodes:
        node.extra_args += SMALL_SNAPSHOTS
    await cluster.start(count=3)
    create(cluster, "everywhere", "--mode", "global", *SLEEPER)
    await _write(cluster, 300, "age")
    await _compacted(cluster)

    # A 4th node joins the aged cluster.
    n4, n5, n6 = cluster.nodes[3:]
    await _joins_in_step(cluster, n4)

    # The leader is killed and comes back: another node leads when the 5th joins.
    old_leader = await _leader(cluster)
    old_leader.kill9()
    await wait_for(lambda: _leader_other_than(cluster, old_leader), timeout=20, what="a new leader")
    old_leader.start()
    await _write(cluster, 200, "after-leader-change")
    await _compacted(cluster)
    await _joins_in_step(cluster, n5)

    # A voter that is not the leader restarts; the 6th joins after it.
    leader = await _leader(cluster)
    voter = next(n for n in cluster.nodes[:3] if n is not leader)
    voter.stop()
    voter.start()
    await _write(cluster, 200, "after-restart")
    await _compacted(cluster)
    await _joins_in_step(cluster, n6)

    # Every node, old and new, runs its task of the global service.
    await _runs_its_global_task(cluster, {n.name for n in cluster.nodes})

    # The new nodes are seen down within the gossip bound when killed.
    leader = await _leader(cluster)
    for node in (n4, n5, n6):
        node.kill9()
    for node in (n4, n5, n6):
        await until_node(
            cluster, node.name, "down", via=cluster.nodes.index(leader), timeout=SEEN_DOWN
        )


async def _leader_other_than(cluster: LocalCluster, old: NodeProc) -> bool:
    running = [i for i, n in enumerate(cluster.nodes) if n.running]
    leader = cluster.nodes[await cluster.leader_index(running)]
    return leader is not old


async def test_a_node_joins_after_a_compaction_at_the_default_threshold(fresh):
    """At the default settings a voter compacts its log 60 s after the last snapshot, so a
    cluster a little over a minute old has no log from its first entries."""
    cluster = fresh(4)
    await cluster.start(count=3)
    await _write(cluster, 50, "age")
    await _compacted(cluster, timeout=90)
    await _joins_in_step(cluster, cluster.nodes[3])


async def _voter_view(cluster: LocalCluster) -> tuple[int, int]:
    """(voters in the replicated state, voters in the leader's Raft configuration)."""
    leader = await _leader(cluster)
    async with leader.client() as client:
        info = await client.get("/v1/cluster")
    return len(info["voters"]), len(info["this_node"]["raft_partners"]) + 1


async def test_promote_and_demote_twenty_times_with_members_present(tmp_path):
    cluster = LocalCluster(str(tmp_path), 4, EQUAL_PROCESS_NODES + SMALL_SNAPSHOTS)
    try:
        await cluster.start()

        async def three_voters_one_member() -> bool:
            listed = await cluster.get(0, "/v1/nodes")
            # A member can take a seat only once it is ready (gossip has seen it).
            return sorted(n["role"] for n in listed) == [
                "member",
                "voter",
                "voter",
                "voter",
            ] and all(n["status"] == "ready" for n in listed)

        await wait_for(three_voters_one_member, timeout=60, what="3 voters and a ready member")
        for round_ in range(20):
            leader = await _leader(cluster)
            async with leader.client() as client:
                listed = await client.get("/v1/nodes")
                if round_ % 2 == 0:
                    name = next(
                        n["name"]
                        for n in listed
                        if n["role"] == "voter" and n["name"] != leader.name
                    )
                    await client.post(f"/v1/nodes/{name}/demote")
                else:
                    name = next(n["name"] for n in listed if n["role"] == "member")
                    await client.post(f"/v1/nodes/{name}/promote")
            state_voters, raft_voters = await _voter_view(cluster)
            assert state_voters == raft_voters == 3, (round_, state_voters, raft_voters)
            await _write(cluster, 40, f"round{round_}")
        # Every node still holds the same state and the cluster still takes writes.
        await _write(cluster, 10, "final")
        leader = await _leader(cluster)

        async def all_in_step() -> bool:
            states = [await _state_of(n) for n in cluster.nodes]
            return all(s == states[0] for s in states)

        await wait_for(all_in_step, timeout=IN_STEP, what="every node in step")
        assert await _voter_view(cluster) == (3, 3)
    finally:
        stop_nodes(cluster)
        print(cluster.logs())
