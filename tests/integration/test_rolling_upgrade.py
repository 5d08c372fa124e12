"""A rolling upgrade of Shoal itself: a 3-node process cluster started on the previous release
(the parent commit, unpacked from git) is upgraded node by node to this one — drain, stop,
start on this code with the same data dir, activate — under a stream of writes and of
requests through the routing mesh to a 3-replica service. No write fails outside the
election that follows a stopped leader, no request fails, and the cluster's protocol level,
and with it proposal batching and Raft over TLS only, rises only once the last node runs
this release."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import pytest

import consensus
from consensus import protocol
from node.client import ShoalClient
from node.devcluster.localcluster import EQUAL_PROCESS_NODES, LocalCluster, NodeProc, wait_for
from node.raft_gate import SEAL_FILE
from tests.integration.cluster_support import must, shoal
from tests.integration.mesh_support import (
    fetch,
    healthy_tasks,
    mesh_cluster,
    new_session,
    serving,
)
from tests.integration.test_rollout_mesh import ROLLING

pytestmark = pytest.mark.timeout(240)

# The release to upgrade from: the parent of the commit under test, unless named here.
FROM_ENV = "SHOAL_UPGRADE_FROM"
PACKAGES = ("consensus", "node", "scheduler", "netoverlay")
WRITERS = 4
# Writes may fail from the moment a leader is stopped until this long after the others
# agree on a new one (forwarded writes in flight, clients that asked the old one).
ELECTION_GRACE = 1.0


def previous_release(into: str) -> tuple[str, int]:
    """Unpack the release before this one into `into`: (its commit, its protocol level)."""
    here = os.path.dirname(os.path.abspath(__file__))
    wanted = os.environ.get(FROM_ENV, "HEAD~1")
    if shutil.which("git") is None:
        pytest.skip("no previous release to upgrade from: git is not installed")
    found = subprocess.run(
        ["git", "-C", here, "rev-parse", "--show-toplevel", f"{wanted}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        pytest.skip(
            f"no previous release to upgrade from: {wanted} is not a commit of a git checkout "
            f"({found.stderr.strip()[:200]})"
        )
    top, commit = found.stdout.split()
    os.makedirs(into)
    archive = subprocess.Popen(
        ["git", "-C", top, "archive", "--format=tar", commit, "--", *PACKAGES],
        stdout=subprocess.PIPE,
    )
    subprocess.run(["tar", "-x", "-C", into], stdin=archive.stdout, check=True)
    assert archive.wait() == 0, f"git archive {commit} failed"
    return commit, _level_of(into)


def future_release(into: str, level: int) -> None:
    """This code as a later release that speaks `level`: every node of this release is
    older than it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(consensus.__file__)))
    for package in PACKAGES:
        shutil.copytree(
            os.path.join(root, package),
            os.path.join(into, package),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    path = os.path.join(into, "consensus", "protocol.py")
    with open(path) as f:
        source = f.read()
    with open(path, "w") as f:
        f.write(re.sub(r"^PROTOCOL = \d+$", f"PROTOCOL = {level}", source, flags=re.MULTILINE))
    assert _level_of(into) == level


def _level_of(tree: str) -> int:
    """The protocol level of the release in `tree` (the lowest for one before levels)."""
    try:
        with open(os.path.join(tree, "consensus", "protocol.py")) as f:
            found = re.search(r"^PROTOCOL = (\d+)$", f.read(), re.MULTILINE)
    except FileNotFoundError:
        return protocol.LOWEST
    assert found is not None, "consensus/protocol.py names no PROTOCOL"
    return int(found.group(1))


@dataclass
class Writes:
    """Every write and every failed one, with when it was sent and when it failed."""

    done: int = 0
    failed: list[tuple[float, float, str]] = field(default_factory=list)

    def outside(self, windows: list[tuple[float, float]]) -> list[str]:
        return [
            what
            for sent, ended, what in self.failed
            if not any(sent <= end and ended >= start for start, end in windows)
        ]


class Nodes:
    """The nodes that writes and requests go to (none being upgraded), one client each."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.up = set(range(len(cluster.nodes)))
        self.clients = {i: n.client() for i, n in enumerate(cluster.nodes)}
        # Clients of nodes that left, closed at the end: a write may still be on its way.
        self.retired: list[ShoalClient] = []

    def leave(self, i: int) -> None:
        self.up.discard(i)
        self.retired.append(self.clients.pop(i))

    def back(self, i: int) -> None:
        self.clients[i] = self.cluster.nodes[i].client()
        self.up.add(i)

    def addresses(self) -> list[str]:
        return [self.cluster.nodes[i].address for i in sorted(self.up)]

    async def close(self) -> None:
        for client in [*self.clients.values(), *self.retired]:
            await client.close()


async def write_stream(nodes: Nodes, writer: int, stop: asyncio.Event, writes: Writes) -> None:
    """Label updates through the nodes in turn, each sent once (no retry)."""
    sent = 0
    while not stop.is_set():
        i = sorted(nodes.up)[sent % len(nodes.up)]
        client: ShoalClient = nodes.clients[i]
        started = time.monotonic()
        try:
            await client.patch(
                f"/v1/nodes/n{writer % 3 + 1}", {"add_labels": {f"w{writer}": str(sent)}}
            )
            writes.done += 1
        except Exception as exc:  # every kind of failure counts
            writes.failed.append((started, time.monotonic(), f"via n{i + 1}: {exc!r}"))
            await asyncio.sleep(0.05)
        sent += 1


async def levels(cluster: LocalCluster, i: int) -> dict:
    return (await cluster.get(i, "/v1/cluster"))["protocol"]


async def upgrade(
    cluster: LocalCluster, i: int, nodes: Nodes, elections: list[tuple[float, float]]
) -> float:
    """Drain node i, stop it, start it on this release, activate it; returns the seconds."""
    node = cluster.nodes[i]
    started = time.monotonic()
    nodes.leave(i)
    via = cluster.nodes[min(nodes.up)].api
    must(
        await asyncio.to_thread(
            shoal, "node", "update", node.name, "--availability", "drain", addr=via
        )
    )

    async def drained() -> bool:
        healthy = await healthy_tasks(cluster)
        return (
            len(healthy) == 3
            and all(t["node_name"] != node.name for t in healthy.values())
            and all([await serving(cluster, j, 3) for j in nodes.up])
        )

    await wait_for(drained, 60, f"{node.name}'s replicas to run elsewhere")
    leader = await cluster.leader_index()
    stopped = time.monotonic()
    node.stop()
    if leader == i:
        await cluster.leader_index(among=sorted(nodes.up))
        elections.append((stopped, time.monotonic() + ELECTION_GRACE))
    node.code_dir = None
    node.start()

    async def ready() -> bool:
        listed = await cluster.get(i, "/v1/nodes")
        return (
            (await cluster.get(i, "/healthz"))["ok"]
            and all(n["status"] == "ready" for n in listed)
            and await serving(cluster, i, 3)
        )

    await wait_for(ready, 60, f"{node.name} to serve on this release")
    must(
        await asyncio.to_thread(
            shoal, "node", "update", node.name, "--availability", "active", addr=via
        )
    )
    nodes.back(i)
    return time.monotonic() - started


async def test_a_cluster_is_upgraded_node_by_node_under_writes_and_requests(tmp_path):
    commit, old_level = previous_release(str(tmp_path / "previous"))
    (tmp_path / "cluster").mkdir()
    async with mesh_cluster(tmp_path / "cluster", code_dir=str(tmp_path / "previous")) as cluster:
        async with cluster.nodes[0].client() as client:
            await client.post("/v1/services", ROLLING)

        async def all_serving() -> bool:
            return all([await serving(cluster, i, 3) for i in range(3)])

        await wait_for(all_serving, 60, "every node to serve 3 endpoints")
        nodes = Nodes(cluster)
        stop = asyncio.Event()
        writes = Writes()
        writers = [
            asyncio.ensure_future(write_stream(nodes, w, stop, writes)) for w in range(WRITERS)
        ]
        requests = asyncio.ensure_future(hammer_up(nodes, stop))
        elections: list[tuple[float, float]] = []
        took = []
        try:
            await asyncio.sleep(1.0)
            for i in range(3):
                took.append(await upgrade(cluster, i, nodes, elections))
                upgraded = list(range(i + 1))
                if i < 2:
                    # Not every node runs this release yet: the level is the old one's,
                    # and no node of this release wrote a batch.
                    for j in upgraded:
                        now = await wait_for(
                            lambda j=j: _heard_all(cluster, j), 30, f"n{j + 1} to hear every node"
                        )
                        assert now["minimum"] == old_level, now
                        if old_level < protocol.BATCH:
                            assert now["batched_entries"] == 0, now
            for j in range(3):
                await wait_for(
                    lambda j=j: _at_level(cluster, j, protocol.PROTOCOL),
                    30,
                    f"n{j + 1} to see every node at this release's level",
                )
            for j in range(3):
                await wait_for(
                    lambda j=j: _tls_only(cluster, j),
                    30,
                    f"n{j + 1} to speak Raft over TLS only, connected to both other voters",
                )
            leader = await cluster.leader_index()

            async def batching() -> bool:
                return (await levels(cluster, leader))["batched_entries"] > 0

            await wait_for(batching, 30, "the leader to batch proposals")
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.gather(*writers)
            done, failures = await requests
            await nodes.close()
        status = must(
            await asyncio.to_thread(shoal, "cluster", "status", addr=cluster.nodes[0].api)
        )
        listing = must(await asyncio.to_thread(shoal, "node", "ls", addr=cluster.nodes[0].api))
    in_elections = len(writes.failed) - len(writes.outside(elections))
    print(
        f"upgrade from {commit[:10]} (level {old_level}) to level {protocol.PROTOCOL}: "
        f"{writes.done} writes, {in_elections} failed during {len(elections)} election(s), "
        f"{len(writes.outside(elections))} failed outside; {done} requests through the mesh, "
        f"{len(failures)} failed; each node's upgrade took " + ", ".join(f"{s:.1f} s" for s in took)
    )
    print(status)
    print(listing)
    assert writes.done > 0 and writes.outside(elections) == []
    assert done > 0 and failures == []
    assert f"{protocol.PROTOCOL} (this node: {protocol.PROTOCOL}" in status


async def hammer_up(nodes: Nodes, stop: asyncio.Event) -> tuple[int, list[str]]:
    """Requests through the mesh of every node not being upgraded, until `stop`."""
    done, failures = 0, []
    async with new_session() as session:
        while not stop.is_set():
            for address in nodes.addresses():
                try:
                    await fetch(session, address)
                except Exception as exc:  # every kind of failure counts; none may happen
                    failures.append(f"{address}: {exc!r}")
                done += 1
    return done, failures


async def _heard_all(cluster: LocalCluster, i: int) -> dict | None:
    now = await levels(cluster, i)
    return now if now["unheard"] == 0 else None


async def _tls_only(cluster: LocalCluster, i: int) -> bool:
    """Node i no longer takes plain Raft connections (it sealed TLS), and its Raft is
    connected to both other voters: over TLS, the plain ones it had were cut."""
    if not os.path.exists(os.path.join(cluster.nodes[i].data_dir, SEAL_FILE)):
        return False
    mine = (await cluster.get(i, "/v1/cluster"))["this_node"]
    return len(mine["connected_partners"]) == 2


async def _at_level(cluster: LocalCluster, i: int, level: int) -> bool:
    now = await levels(cluster, i)
    return now["minimum"] == level and now["unheard"] == 0


def _refused(node: NodeProc) -> str:
    """The reason node gave for exiting with 2 (it must, within 30 s)."""
    assert node.proc is not None
    assert node.proc.wait(30) == 2, node.log()
    return node.log()


async def test_a_node_of_an_older_release_refuses_to_join_or_start_in_a_newer_cluster(tmp_path):
    newer = protocol.PROTOCOL + 1
    future_release(str(tmp_path / "future"), newer)
    (tmp_path / "cluster").mkdir()
    cluster = LocalCluster(str(tmp_path / "cluster"), 3, EQUAL_PROCESS_NODES)
    for node in cluster.nodes[:2]:
        node.code_dir = str(tmp_path / "future")
    try:
        await cluster.start(count=2)
        await wait_for(
            lambda: _at_level(cluster, 0, newer), 30, f"the cluster to speak level {newer}"
        )
        said = f"this node speaks protocol level {protocol.PROTOCOL} and the cluster {newer}"

        joining = cluster.nodes[2]
        joining.start(join=cluster.nodes[0].api, token=cluster.token)
        assert said in _refused(joining)
        assert [n["name"] for n in await cluster.get(0, "/v1/nodes")] == ["n1", "n2"]

        restarted = cluster.nodes[1]
        restarted.stop()
        restarted.code_dir = None
        restarted.start()
        assert said in _refused(restarted)
    finally:
        cluster.stop()
        print(cluster.logs())
