"""Members follow a voter's committed-state feed instead of running Raft: a write reaches
every member, a linearizable read on a member sees a write acknowledged elsewhere, and a
member cut off from the voter it follows moves to another and resumes from its index,
without a snapshot while the voters still hold the entries it missed and with one once it
fell further behind than that (the ring holds --snapshot-entries entries: 100 here)."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from node.devcluster.localcluster import EQUAL_PROCESS_NODES, LocalCluster, NodeProc, wait_for
from tests.integration.cluster_support import stop_nodes
from tests.integration.test_linearizable_reads import _clients
from tests.safety.checker import not_linearizable
from tests.safety.history import HistoryRecorder, OpKind, Outcome
from tests.safety.shoal_client import ShoalApi

pytestmark = pytest.mark.timeout(240)

RING = 100


@pytest.fixture
def cluster(tmp_path):
    cluster = LocalCluster(
        str(tmp_path), 5, EQUAL_PROCESS_NODES + ["--snapshot-entries", str(RING)]
    )
    try:
        yield cluster
    finally:
        stop_nodes(cluster)
        print(cluster.logs())


async def _label(node: NodeProc, owner: str, key: str, stale: bool) -> str | None:
    async with node.client() as client:
        path = f"/v1/nodes/{owner}" + ("?stale=1" if stale else "")
        return (await client.get(path))["labels"].get(key)


async def _write(node: NodeProc, owner: str, key: str, value: str) -> None:
    async with node.client() as client:
        await client.patch(f"/v1/nodes/{owner}", {"add_labels": {key: value}})


async def _writes(node: NodeProc, owner: str, count: int, tag: str) -> None:
    async with node.client() as client:
        for i in range(count):
            await client.patch(f"/v1/nodes/{owner}", {"add_labels": {"seq": f"{tag}-{i}"}})


async def _this_node(node: NodeProc) -> dict:
    async with node.client() as client:
        return (await client.get("/v1/cluster"))["this_node"]


async def _caught_up(node: NodeProc) -> bool:
    try:
        return bool((await _this_node(node))["caught_up"])
    except Exception:  # its API is not up yet
        return False


async def _snapshots_restored(node: NodeProc) -> float:
    """The member's count of snapshots restored from the feed (its metrics)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{node.url}/metrics",
            headers={"Authorization": f"Bearer {node.api_token}"},
            ssl=node.ssl_context(),
        ) as resp,
    ):
        text = await resp.text()
    prefix = "shoal_feed_snapshots_restored_total "
    return float(next(line for line in text.splitlines() if line.startswith(prefix)).split()[1])


async def test_members_follow_the_feed_and_resume_from_their_index(cluster):
    # Four nodes (3 voters and a member); the fifth joins later, through the member.
    await cluster.start(count=4)
    await cluster.wait_voters(3)
    *four, newcomer = cluster.nodes
    member = await wait_for(lambda: _a_member(four), what="a member")
    owner = cluster.nodes[0].name
    assert (await _this_node(member))["caught_up"]

    # A write through a voter is visible on the member, at once for a linearizable read.
    for i in range(5):
        await _write(cluster.nodes[0], owner, "color", f"blue-{i}")
        assert await _label(member, owner, "color", stale=False) == f"blue-{i}"

    # And a write through the member (forwarded to the leader) reads back everywhere.
    await _write(member, owner, "color", "green")
    for node in four:
        assert await _label(node, owner, "color", stale=False) == "green"

    async def followed() -> NodeProc | None:
        connected = (await _this_node(member))["connected_partners"]
        return next((n for n in four if connected == [f"{n.address}:7421"]), None)

    async def cut_off_and_resume(writes: int, tag: str) -> None:
        """Stop the member and the voter it follows, commit `writes` through another voter,
        resume the member alone: it must move to another voter."""
        voter = await wait_for(followed, what="the member to follow a voter")
        other = next(n for n in four if n is not voter and n is not member)
        member.signal(signal.SIGSTOP)
        voter.signal(signal.SIGSTOP)
        try:
            await _writes(other, owner, writes, tag)
        finally:
            member.signal(signal.SIGCONT)

        async def applied() -> bool:
            return await _label(member, owner, "seq", stale=True) == f"{tag}-{writes - 1}"

        await wait_for(applied, timeout=30, what=f"the member to apply {tag}")
        voter.signal(signal.SIGCONT)

    before = await _snapshots_restored(member)
    await cut_off_and_resume(RING // 4, "short")
    assert await _snapshots_restored(member) == before, (
        "resumed with a snapshot though entries were held"
    )

    await cut_off_and_resume(RING * 2, "long")
    assert await _snapshots_restored(member) == before + 1, (
        "fell behind the ring without a snapshot"
    )

    # A node that joins through the member finds the voters' feed from what the member knows.
    newcomer.start(join=member.api, token=cluster.token)
    await wait_for(lambda: _caught_up(newcomer), timeout=60, what="the newcomer to catch up")
    assert "feed: following" in newcomer.log()


async def _a_member(nodes: list[NodeProc]) -> NodeProc | None:
    for node in nodes:
        if (await _this_node(node))["raft_role"] == "member":
            return node
    return None


async def test_reads_through_a_member_stay_linearizable_while_its_voter_pauses(cluster):
    """Clients write and read two labels through every node, the member included, while the
    voter the member follows is paused (SIGSTOP) and resumed: the WGL checker finds the
    history legal."""
    await cluster.start(count=4)
    await cluster.wait_voters(3)
    four = cluster.nodes[:4]
    member = await wait_for(lambda: _a_member(four), what="a member")
    names = [n.name for n in four]
    recorder, stop = HistoryRecorder(), asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0)) as session:
        api = ShoalApi(
            {n.name: n.api for n in four},
            four[0].api_token,
            session,
            0.05,
            ssl_context=four[0].ssl_context(),
        )
        clients = asyncio.create_task(_clients(api, names, recorder, stop))
        try:
            await asyncio.sleep(2.0)
            connected = (await _this_node(member))["connected_partners"]
            voter = next(n for n in four if connected == [f"{n.address}:7421"])
            voter.signal(signal.SIGSTOP)
            await asyncio.sleep(6.0)  # past the member's silence timeout: it moves on
            voter.signal(signal.SIGCONT)
            await asyncio.sleep(2.0)
        finally:
            stop.set()
            await clients
    history = recorder.history({})
    done = [op for op in history.operations if op.outcome is Outcome.OK]
    through_member = [op for op in done if op.node == member.name and op.kind is OpKind.READ]
    assert len(through_member) >= 10, "too few reads through the member to judge"
    violations = not_linearizable(history.operations)
    assert not violations, "\n".join(map(str, violations))
