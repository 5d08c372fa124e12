"""The routing mesh's core flow on a real 3-node cluster, shared by the process-runtime
integration test and the Docker end-to-end test: a published service answers at every node
(also one without a replica), a killed replica stops getting requests, a new replica gets
them, a node that leaves and rejoins serves the right endpoints, and DNS answers what the
endpoint table says."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from dnslib import QTYPE, DNSRecord

from node import config as cfg
from node.devcluster.localcluster import LocalCluster, NodeProc, wait_for
from node.mesh import MeshConfig
from node.runtime import ProcessDriver
from tests.support import unavailable

PUBLISHED = 18080
# Placement and health for the flow's service: two replicas, none on n3 (the mesh must
# still answer there), checked often so that endpoints come and go quickly.
WEB = {
    "name": "web",
    "replicas": 2,
    "constraints": ["node.hostname!=n3"],
    "restart": {"delay": "0.2s"},
    "stop_grace_period": "1s",
}
HTTP_CHECK = {"kind": "http", "path": "/", "interval": "0.2s", "timeout": "1s"}

# Kills one replica: its task (as the API shows it) and the node it runs on.
Kill = Callable[[dict, NodeProc], Awaitable[None]]


def require_nft() -> None:
    if os.geteuid() != 0:
        unavailable("the nftables data plane needs root")
    if shutil.which("nft") is None:
        unavailable("nft is not installed")


def node_id_of(node: NodeProc) -> str | None:
    """The node's id, once it has created or joined a cluster."""
    stored = cfg.load(node.data_dir)
    return stored.identity.node_id if stored is not None and stored.identity is not None else None


def node_ids(cluster: LocalCluster) -> list[str]:
    return [i for i in map(node_id_of, cluster.nodes) if i is not None]


def remove_leftover_tables(cluster: LocalCluster) -> None:
    """A node removes its nftables table when it stops; one killed for hanging cannot."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        return
    for node_id in node_ids(cluster):
        subprocess.run(
            ["nft", "delete", "table", "ip", MeshConfig(node_id).nft_table], capture_output=True
        )


async def create(cluster: LocalCluster, spec: dict) -> None:
    async with cluster.nodes[0].client() as client:
        await client.post("/v1/services", spec)


async def fetch(session: aiohttp.ClientSession, address: str) -> str:
    async with session.get(f"http://{address}:{PUBLISHED}/") as answer:
        assert answer.status == 200
        return (await answer.text()).strip()


def new_session() -> aiohttp.ClientSession:
    # A new connection per request: the mesh balances connections.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True), timeout=aiohttp.ClientTimeout(total=5)
    )


async def healthy_tasks(cluster: LocalCluster) -> dict[str, dict]:
    """The web tasks that should get traffic, by id, from the replicated state."""
    return healthy_of(await cluster.get(0, "/v1/tasks?service=web"))


def healthy_of(tasks: list[dict]) -> dict[str, dict]:
    return {
        t["id"]: t
        for t in tasks
        if t["desired"] == "running" and t["state"] == "running" and t["health"] == "healthy"
    }


def brief(tasks: list[dict]) -> list[tuple]:
    """What a timeout message needs of each task."""
    return [
        (t["id"], t["node_id"][:6], t["desired"], t["state"], t["health"], t.get("error"))
        for t in tasks
    ]


async def table(cluster: LocalCluster, i: int) -> set[tuple[str, str, str]]:
    body = await cluster.get(i, "/v1/services/web/endpoints")
    return {(e["task_id"], e["node_name"], e["endpoint"]) for e in body["endpoints"]}


async def tables_agree(cluster: LocalCluster, count: int, among: list[int]) -> set | None:
    """The endpoint table, once every node in `among` shows the same `count` healthy tasks."""
    healthy = await healthy_tasks(cluster)
    views = [await table(cluster, i) for i in among]
    expected = {t["id"] for t in healthy.values()}
    if len(expected) == count and all({e[0] for e in v} == expected for v in views):
        return views[0]
    return None


async def serving(cluster: LocalCluster, i: int, count: int) -> bool:
    """Whether node i's data plane serves the published port with `count` endpoints."""
    status = await cluster.get(i, "/v1/mesh")
    return any(
        p["published_port"] == PUBLISHED and p["listening"] and len(p["endpoints"]) == count
        for p in status["serving"]
    )


async def all_serving(cluster: LocalCluster, count: int) -> bool:
    return all([await serving(cluster, i, count) for i in range(len(cluster.nodes))])


async def served_by(addresses: list[str], requests: int) -> dict[str, set[str]]:
    """Task ids seen answering at each address."""
    seen: dict[str, set[str]] = {a: set() for a in addresses}
    async with new_session() as session:
        for _ in range(requests):
            for address in addresses:
                seen[address].add(await fetch(session, address))
    return seen


async def no_request_fails(addresses: list[str], seconds: float) -> int:
    """Request in a loop for `seconds`; every request must succeed. Returns how many ran."""
    done = 0
    deadline = time.monotonic() + seconds
    async with new_session() as session:
        while time.monotonic() < deadline:
            for address in addresses:
                await fetch(session, address)
                done += 1
    return done


def dns(address: str, port: int, name: str, qtype: str) -> list:
    reply = DNSRecord.parse(DNSRecord.question(name, qtype).send(address, port, timeout=2))
    return reply.rr


async def dns_matches_table(cluster: LocalCluster, i: int) -> bool:
    node = cluster.nodes[i]
    body = await cluster.get(i, "/v1/services/web/endpoints")

    def ask(name: str, qtype: str) -> Awaitable[list]:
        return asyncio.to_thread(dns, node.address, node.api_port + 3, name, qtype)

    ingress = sorted(str(rr.rdata) for rr in await ask("web.shoal", "A"))
    (port,) = body["ports"]
    assert (
        ingress
        == sorted(port["addresses"])
        == sorted(n.address for n in cluster.nodes if n.running)
    )
    tasks = sorted({str(rr.rdata) for rr in await ask("tasks.web.shoal", "A")})
    assert tasks == sorted({e["address"] for e in body["endpoints"]})
    srv = sorted(
        (str(rr.rdata.target).split(".")[0], rr.rdata.port)
        for rr in await ask("tasks.web.shoal", "SRV")
        if rr.rtype == QTYPE.SRV
    )
    return srv == sorted((e["task_id"], e["port"]) for e in body["endpoints"])


async def routing_mesh_flow(cluster: LocalCluster, spec: dict, kill: Kill) -> None:
    """The core flow, on a 3-node cluster and a 2-replica `web` service kept off n3, that
    answers GET with its task id on PUBLISHED; `kill(task, node)` kills one replica."""
    addresses = [n.address for n in cluster.nodes]
    await create(cluster, spec)
    first = await wait_for(
        lambda: tables_agree(cluster, 2, [0, 1, 2]), what="2 endpoints everywhere"
    )
    assert {node for _, node, _ in first} == {"n1", "n2"}
    await wait_for(lambda: all_serving(cluster, 2), what="every node to serve 2 endpoints")

    # Every node answers on the published port, n3 (no replica) included, from both replicas.
    seen = await served_by(addresses, 10)
    assert all(seen[a] <= {t for t, _, _ in first} for a in addresses)
    assert set.union(*seen.values()) == {t for t, _, _ in first}
    await wait_for(lambda: dns_matches_table(cluster, 2), what="DNS to match the table")

    # Kill one replica: after a grace of 2 s, no request fails.
    healthy = await healthy_tasks(cluster)
    victim = sorted(healthy)[0]
    names = {n["id"]: n["name"] for n in await cluster.get(0, "/v1/nodes")}
    holder = next(n for n in cluster.nodes if n.name == names[healthy[victim]["node_id"]])
    await kill(healthy[victim], holder)
    await asyncio.sleep(2.0)
    assert await no_request_fails(addresses, 3.0) > 0
    assert all([victim not in {t for t, _, _ in await table(cluster, i)} for i in range(3)])

    # Scale up: the new replica gets traffic (bounded wait, not a timing assertion).
    known = set(await healthy_tasks(cluster))
    async with cluster.nodes[0].client() as client:
        await client.patch("/v1/services/web", {"replicas": 3})

    async def newcomer_answers() -> bool:
        # Assertions, not False: a timeout then says which step never happened.
        tasks = await cluster.get(0, "/v1/tasks?service=web")
        current = set(healthy_of(tasks))
        new = current - known - {victim}
        assert new and len(current) >= 3, f"healthy {sorted(current)}, tasks {brief(tasks)}"
        seen = await served_by(addresses, 6)
        tables = [sorted(t for t, _, _ in await table(cluster, i)) for i in range(3)]
        assert new & set.union(*seen.values()), f"new {sorted(new)}, served {seen}, tables {tables}"
        return True

    # 60 s: CI once missed a 30 s bound here; the message says which step lagged.
    await wait_for(newcomer_answers, timeout=60, what="the scaled-up replica to get traffic")

    # A node with a replica leaves (SIGTERM) and rejoins: it serves the right endpoints.
    leader = await cluster.leader_index()
    holders = {t["node_id"] for t in (await healthy_tasks(cluster)).values()}
    rejoiner = next(
        i
        for i, n in enumerate(cluster.nodes)
        if i != leader and n.name in {names[h] for h in holders}
    )
    others = [i for i in range(3) if i != rejoiner]
    cluster.nodes[rejoiner].stop()

    async def withdrawn() -> bool:
        gone = cluster.nodes[rejoiner].name
        return all([gone not in {n for _, n, _ in await table(cluster, i)} for i in others])

    await wait_for(withdrawn, what="the leaver's endpoints withdrawn")
    cluster.nodes[rejoiner].start()
    final = await wait_for(
        lambda: tables_agree(cluster, 3, [0, 1, 2]),
        timeout=60,
        what="the rejoined node to agree on 3 endpoints",
    )
    await wait_for(lambda: serving(cluster, rejoiner, 3), what="the rejoined node to serve them")
    address = cluster.nodes[rejoiner].address
    served = (await served_by([address], 12))[address]
    assert served <= {t for t, _, _ in final} and served
    await wait_for(lambda: dns_matches_table(cluster, rejoiner), what="DNS to match the table")


async def remove_leftover_tasks(cluster: LocalCluster) -> None:
    """Task processes outlive their nodes by design: end what the test left running."""
    for node in cluster.nodes:
        driver = ProcessDriver(node.data_dir)
        for seen in await driver.list_owned():
            await driver.remove(seen.task_id)


@contextlib.asynccontextmanager
async def mesh_cluster(
    tmp_path: object,
    dataplane: str = "proxy",
    count: int | None = None,
    code_dir: str | None = None,
) -> AsyncIterator[LocalCluster]:
    """A 3-node process cluster (`count` of them started) whose routing mesh is `dataplane`,
    its nodes started from `code_dir` (NodeProc.code_dir); on the way out it stops the nodes,
    ends the tasks they leave running (and the nft tables), and prints the logs."""
    cluster = LocalCluster(
        str(tmp_path),
        3,
        ["--runtime", "process", "--cpus", "4", "--memory", str(8 << 30)]
        + ["--lb-dataplane", dataplane],
    )
    for node in cluster.nodes:
        node.code_dir = code_dir
    try:
        await cluster.start(count=count)
        yield cluster
    finally:
        cluster.stop()
        await remove_leftover_tasks(cluster)
        if dataplane == "nft":
            remove_leftover_tables(cluster)
        print(cluster.logs())
