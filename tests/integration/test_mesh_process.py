"""The routing mesh, the endpoint table and DNS on a real 3-node cluster with the process
runtime: a published service answers at every node (also one without a replica), a killed
replica stops getting requests, a new replica gets them, a node that leaves and rejoins
serves the right endpoints, and DNS answers what the table says."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time

import aiohttp
import pytest
from dnslib import QTYPE, DNSRecord

from node import config as cfg
from node.localcluster import LocalCluster, wait_for
from node.mesh import MeshConfig
from node.runtime import ProcessDriver
from node.runtime.process_records import load_record
from tests.support import unavailable

pytestmark = pytest.mark.timeout(180)

PUBLISHED = 18080
# Answers every GET with its task id, so a test can tell which replica served it.
SERVER = """\
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["SHOAL_TASK_ID"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
"""
WEB = {"name": "web", "image": "process", "command": [sys.executable, "-c", SERVER],
       "replicas": 2, "ports": [f"{PUBLISHED}:8000"],
       # n3 runs no replica: the mesh must still answer there.
       "constraints": ["node.hostname!=n3"],
       "health": {"kind": "http", "path": "/", "interval": "0.2s", "timeout": "1s"},
       "restart": {"delay": "0.2s"}, "stop_grace_period": "1s"}


async def remove_leftover_tasks(cluster: LocalCluster) -> None:
    """Task processes outlive their nodes by design: end what the test left running."""
    for node in cluster.nodes:
        driver = ProcessDriver(node.data_dir)
        for seen in await driver.list_owned():
            await driver.remove(seen.task_id)


def remove_leftover_tables(cluster: LocalCluster) -> None:
    """A node removes its nftables table when it stops; one killed for hanging cannot."""
    for node in cluster.nodes:
        stored = cfg.load(node.data_dir)
        if stored is not None and stored.identity is not None:
            table = MeshConfig(stored.identity.node_id).nft_table
            subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)


def require_nft() -> None:
    if os.geteuid() != 0:
        unavailable("the nftables data plane needs root")
    if shutil.which("nft") is None:
        unavailable("nft is not installed")


@pytest.fixture(params=["proxy", "nft"])
async def cluster(request, tmp_path):
    dataplane = request.param
    if dataplane == "nft":
        require_nft()
    cluster = LocalCluster(str(tmp_path), 3, ["--runtime", "process", "--cpus", "4",
                                              "--memory", str(8 << 30),
                                              "--lb-dataplane", dataplane])
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()
        await remove_leftover_tasks(cluster)
        if dataplane == "nft":
            remove_leftover_tables(cluster)
        print(cluster.logs())


async def create(cluster: LocalCluster, spec: dict) -> None:
    async with cluster.nodes[0].client() as client:
        await client.post("/v1/services", spec)


async def fetch(session: aiohttp.ClientSession, address: str) -> str:
    async with session.get(f"http://{address}:{PUBLISHED}/") as answer:
        assert answer.status == 200
        return await answer.text()


def new_session() -> aiohttp.ClientSession:
    # A new connection per request: the mesh balances connections.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                 timeout=aiohttp.ClientTimeout(total=5))


async def healthy_tasks(cluster: LocalCluster) -> dict[str, dict]:
    """The web tasks that should get traffic, by id, from the replicated state."""
    tasks = await cluster.get(0, "/v1/tasks?service=web")
    return {t["id"]: t for t in tasks
            if t["desired"] == "running" and t["state"] == "running" and t["health"] == "healthy"}


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
    return any(p["published_port"] == PUBLISHED and p["listening"] and len(p["endpoints"]) == count
               for p in status["serving"])


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
    ask = lambda name, qtype: asyncio.to_thread(dns, node.address, node.api_port + 3, name, qtype)
    ingress = sorted(str(rr.rdata) for rr in await ask("web.shoal", "A"))
    (port,) = body["ports"]
    assert ingress == sorted(port["addresses"]) == sorted(n.address for n in cluster.nodes if n.running)
    tasks = sorted({str(rr.rdata) for rr in await ask("tasks.web.shoal", "A")})
    assert tasks == sorted({e["address"] for e in body["endpoints"]})
    srv = sorted((str(rr.rdata.target).split(".")[0], rr.rdata.port)
                 for rr in await ask("tasks.web.shoal", "SRV") if rr.rtype == QTYPE.SRV)
    return srv == sorted((e["task_id"], e["port"]) for e in body["endpoints"])


async def test_every_node_routes_to_healthy_replicas_through_kill_scale_and_rejoin(cluster):
    addresses = [n.address for n in cluster.nodes]
    await create(cluster, WEB)
    first = await wait_for(lambda: tables_agree(cluster, 2, [0, 1, 2]), what="2 endpoints everywhere")
    assert {node for _, node, _ in first} == {"n1", "n2"}
    await wait_for(lambda: all_serving(cluster, 2), what="every node to serve 2 endpoints")

    # Every node answers on the published port, n3 (no replica) included, from both replicas.
    seen = await served_by(addresses, 10)
    assert all(seen[a] <= {t for t, _, _ in first} for a in addresses)
    assert set.union(*seen.values()) == {t for t, _, _ in first}
    assert await dns_matches_table(cluster, 2)

    # Kill one replica: after a grace of 2 s, no request fails.
    healthy = await healthy_tasks(cluster)
    victim = sorted(healthy)[0]
    names = {n["id"]: n["name"] for n in await cluster.get(0, "/v1/nodes")}
    holder = next(n for n in cluster.nodes if n.name == names[healthy[victim]["node_id"]])
    record = load_record(holder.data_dir, victim)
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    await asyncio.sleep(2.0)
    assert await no_request_fails(addresses, 3.0) > 0
    assert all([victim not in {t for t, _, _ in await table(cluster, i)} for i in range(3)])

    # Scale up: the new replica gets traffic (bounded wait, not a timing assertion).
    known = set(await healthy_tasks(cluster))
    async with cluster.nodes[0].client() as client:
        await client.patch("/v1/services/web", {"replicas": 3})

    async def newcomer_answers() -> bool:
        current = set(await healthy_tasks(cluster))
        new = current - known - {victim}
        if not new or len(current) < 3:
            return False
        seen = await served_by(addresses, 6)
        return bool(new & set.union(*seen.values()))

    await wait_for(newcomer_answers, timeout=30, what="the scaled-up replica to get traffic")

    # A node with a replica leaves (SIGTERM) and rejoins: it serves the right endpoints.
    leader = await cluster.leader_index()
    holders = {t["node_id"] for t in (await healthy_tasks(cluster)).values()}
    rejoiner = next(i for i, n in enumerate(cluster.nodes)
                    if i != leader and n.name in {names[h] for h in holders})
    others = [i for i in range(3) if i != rejoiner]
    cluster.nodes[rejoiner].stop()

    async def withdrawn() -> bool:
        gone = cluster.nodes[rejoiner].name
        return all([gone not in {n for _, n, _ in await table(cluster, i)} for i in others])

    await wait_for(withdrawn, what="the leaver's endpoints withdrawn")
    cluster.nodes[rejoiner].start()
    final = await wait_for(lambda: tables_agree(cluster, 3, [0, 1, 2]), timeout=60,
                           what="the rejoined node to agree on 3 endpoints")
    await wait_for(lambda: serving(cluster, rejoiner, 3), what="the rejoined node to serve them")
    address = cluster.nodes[rejoiner].address
    served = (await served_by([address], 12))[address]
    assert served <= {t for t, _, _ in final} and served
    await wait_for(lambda: dns_matches_table(cluster, rejoiner), what="DNS to match the table")
