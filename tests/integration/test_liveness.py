"""Gossip failure detection feeding the replicated node status, and autopilot voter replacement."""

from __future__ import annotations

import asyncio
import functools
import itertools
import signal

import pytest

from node.client import ApiError, Unreachable
from node.devcluster.localcluster import LocalCluster, wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def clusters(tmp_path):
    made: list[LocalCluster] = []

    def make(size: int, extra_args: list[str] | None = None) -> LocalCluster:
        made.append(LocalCluster(str(tmp_path), size, extra_args))
        return made[-1]

    yield make
    for cluster in made:
        cluster.stop()
        print(cluster.logs())


async def _status(cluster: LocalCluster, via: int, name: str) -> str:
    return (await cluster.get(via, f"/v1/nodes/{name}"))["status"]


async def _voter_names(cluster: LocalCluster, via: int) -> set[str]:
    return {n["name"] for n in await cluster.get(via, "/v1/nodes") if n["role"] == "voter"}


async def test_a_killed_node_is_down_everywhere_and_ready_after_restart(clusters):
    cluster = clusters(5)
    await cluster.start()
    await wait_for(lambda: _count_voters(cluster, 5), timeout=60, what="5 voters")
    leader = await cluster.leader_index()
    victim = next(i for i in range(5) if i != leader)
    name = cluster.nodes[victim].name

    async def gossip_sees_all() -> bool:
        members = (await cluster.get(leader, "/v1/cluster/members"))["members"]
        return sum(m["state"] == "alive" for m in members) == 5

    await wait_for(gossip_sees_all, what="every node alive in gossip")
    cluster.nodes[victim].kill9()
    survivors = [i for i in range(5) if i != victim]

    async def down_everywhere() -> bool:
        return all([await _status(cluster, i, name) == "down" for i in survivors])

    # The status is replicated state: the leader committed NodeDown, and every survivor has it.
    await wait_for(down_everywhere, timeout=20, what=f"{name} down on every survivor")
    members = (await cluster.get(survivors[0], "/v1/cluster/members"))["members"]
    assert {m["name"]: m["state"] for m in members}[name] == "dead"

    cluster.nodes[victim].start()
    await wait_for(lambda: _all_ready(cluster, survivors), timeout=30, what=f"{name} ready again")


async def _count_voters(cluster: LocalCluster, count: int) -> bool:
    return len((await cluster.get(0, "/v1/cluster"))["voters"]) == count


async def _all_ready(cluster: LocalCluster, via: list[int]) -> bool:
    for i in via:
        if any(n["status"] != "ready" for n in await cluster.get(i, "/v1/nodes")):
            return False
    return True


async def test_autopilot_replaces_a_dead_voter_while_writes_keep_committing(clusters):
    cluster = clusters(4, ["--voter-grace", "2"])
    await cluster.start()

    async def three_plus_one() -> bool:
        roles = sorted(n["role"] for n in await cluster.get(0, "/v1/nodes"))
        return roles == ["member", "voter", "voter", "voter"]

    await wait_for(three_plus_one, timeout=60, what="3 voters and 1 member")
    voters_before = await _voter_names(cluster, 0)
    (member,) = {n.name for n in cluster.nodes} - voters_before
    leader = await cluster.leader_index()
    victim = next(i for i, n in enumerate(cluster.nodes) if n.name in voters_before and i != leader)

    failures: list[str] = []
    written = 0
    stop = asyncio.Event()

    async def writer() -> None:
        nonlocal written
        async with cluster.nodes[leader].client(timeout=15) as client:
            for n in itertools.count():
                if stop.is_set():
                    return
                try:
                    await client.patch(
                        f"/v1/nodes/{cluster.nodes[leader].name}", {"add_labels": {"seq": str(n)}}
                    )
                    written += 1
                except (ApiError, Unreachable) as exc:
                    failures.append(str(exc))
                await asyncio.sleep(0.05)

    writing = asyncio.ensure_future(writer())
    try:
        cluster.nodes[victim].kill9()

        async def replaced() -> bool:
            voters = await _voter_names(cluster, leader)
            return (
                member in voters and cluster.nodes[victim].name not in voters and len(voters) == 3
            )

        await wait_for(
            replaced, timeout=60, what=f"{member} to replace {cluster.nodes[victim].name}"
        )
        before = written
        await wait_for(lambda: _async_true(written > before + 5), what="writes after the change")
    finally:
        stop.set()
        await writing
    assert failures == []
    assert written > 10
    status = (await cluster.get(leader, "/v1/cluster"))["this_node"]
    # The Raft membership itself changed, not only the replicated role labels.
    assert cluster.nodes[victim].address + ":7421" not in status["raft_partners"]

    # The demoted voter returns (it still believes it votes) and rejoins as a member, in
    # step with the cluster, without disturbing the voters or their leader.
    term = (await cluster.get(leader, "/v1/cluster"))["term"]
    cluster.nodes[victim].start()

    async def rejoined_as_member() -> bool:
        health = await cluster.get(victim, "/healthz")
        return health["role"] == "member" and health["ok"]

    await wait_for(rejoined_as_member, timeout=60, what="the demoted voter back as a member")
    assert len(await _voter_names(cluster, leader)) == 3
    async with cluster.nodes[victim].client() as client:
        await client.patch(
            f"/v1/nodes/{cluster.nodes[victim].name}", {"add_labels": {"back": "yes"}}
        )
    assert (await cluster.get(leader, "/v1/cluster"))["term"] == term


async def test_a_stalled_voter_of_three_keeps_its_seat_and_returns_to_it(clusters):
    """Autopilot never shrinks three voters because one is down past its grace: the set
    stays at three (two of them still a quorum), and the node comes back to its seat."""
    cluster = clusters(3, ["--voter-grace", "2"])
    await cluster.start()

    async def three_voters() -> bool:
        return len(await _voter_names(cluster, 0)) == 3

    await wait_for(three_voters, timeout=60, what="3 voters")
    leader = await cluster.leader_index()
    victim = next(i for i in range(3) if i != leader)
    others = [i for i in range(3) if i != victim]
    cluster.nodes[victim].signal(signal.SIGSTOP)
    try:

        async def seen_down() -> bool:
            return any(n["status"] == "down" for n in await cluster.get(leader, "/v1/nodes"))

        await wait_for(seen_down, timeout=30, what="the stalled node seen down")
        await asyncio.sleep(6.0)  # three times the grace
        for i in others:
            assert len(await _voter_names(cluster, i)) == 3
    finally:
        cluster.nodes[victim].signal(signal.SIGCONT)
    for i in range(3):
        async with cluster.nodes[i].client(timeout=15) as client:
            await wait_for(
                functools.partial(client.patch, "/v1/nodes/n1", {"add_labels": {"w": str(i)}}),
                timeout=10,
                what=f"a write through n{i + 1}",
            )
    assert all([len(await _voter_names(cluster, i)) == 3 for i in range(3)])


async def _async_true(value: bool) -> bool:
    return value
