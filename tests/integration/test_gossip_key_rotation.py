"""Rotating the gossip key on real node processes while gossip flows: no node is ever
suspected because of it, a packet sealed with the removed key is dropped and counted, a node
stopped during the rotation comes back healthy, and a node that joins afterwards gets the
keyring with the rest of the state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time

import pytest

from netoverlay.gossip import codec
from netoverlay.gossip.keyring import Keyring, KeyringSpec, key_id
from netoverlay.gossip.model import Ack, Ping
from node.client import ApiError, ShoalClient
from node.config import load
from node.devcluster.localcluster import LocalCluster, NodeProc, api_token_for, ca_for, wait_for
from tests.integration.cluster_support import must, shoal

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def cluster(tmp_path):
    made = LocalCluster(str(tmp_path), 4)
    yield made
    made.stop()
    print(made.logs())


class AliveWatch:
    """Looks at every watched node's gossip view, five times a second, and records every
    member it expects up that is not alive there."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.up: set[int] = set()
        self.seen: list[tuple[str, str, str]] = []  # (observer, member, state)
        self.looks = 0

    async def run(self) -> None:
        while True:
            for i in sorted(self.up):
                with contextlib.suppress(Exception):
                    members = (await self.cluster.get(i, "/v1/cluster/members"))["members"]
                    expected = {self.cluster.nodes[j].name for j in self.up}
                    self.seen += [
                        (self.cluster.nodes[i].name, m["name"], m["state"])
                        for m in members
                        if m["name"] in expected and m["state"] != "alive"
                    ]
                    self.looks += 1
            await asyncio.sleep(0.2)


def identity(node: NodeProc):
    stored = load(node.data_dir)
    assert stored is not None and stored.identity is not None
    return stored.identity


def ping_sealed_with(root: bytes, node: NodeProc) -> bool:
    """Send `node` a gossip ping sealed with the ring key `root`; True if it acks (an ack
    sealed with a key of ours)."""
    keys = Keyring("gossip/udp", KeyringSpec.single(root), 60.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((node.address, 0))
        sock.settimeout(1.5)
        ping = Ping(seq=424242, target=identity(node).node_id)
        sock.sendto(keys.seal(codec.encode(ping), time.time()), (node.address, node.api_port + 2))
        try:
            data, _ = sock.recvfrom(65536)
        except TimeoutError:
            return False
    with contextlib.suppress(Exception):
        return isinstance(codec.decode(keys.open(data, time.time())), Ack)
    return False


async def dropped_auth(cluster: LocalCluster, i: int) -> int:
    return (await cluster.get(i, "/v1/cluster/members"))["stats"]["dropped_auth"]


async def every_node_alive_on(cluster: LocalCluster, observers: list[int], names: set[str]):
    for i in observers:
        members = (await cluster.get(i, "/v1/cluster/members"))["members"]
        if {m["name"] for m in members if m["state"] == "alive"} < names:
            return False
    return True


async def rotate(node: NodeProc, grace: float, on_step=None) -> list[str]:
    """`shoal cluster rotate-gossip-key` as an operator runs it; its output lines."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node",
        "cluster",
        "rotate-gossip-key",
        "--addr",
        node.api,
        "--grace",
        str(grace),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, SHOAL_TOKEN=api_token_for(node.api), SHOAL_CA=ca_for(node.api)),
    )
    lines = []
    assert proc.stdout is not None and proc.stderr is not None
    async for raw in proc.stdout:
        line = raw.decode().rstrip()
        lines.append(line)
        if on_step is not None:
            await on_step(line)
    error = (await proc.stderr.read()).decode()
    assert await proc.wait() == 0, f"rotation failed: {error}\n" + "\n".join(lines)
    return lines


async def test_rotating_the_gossip_key_cuts_no_node_off_and_refuses_the_old_key(cluster):
    await cluster.start(count=3)
    await cluster.wait_voters(3)
    names = {n.name for n in cluster.nodes[:3]}
    await wait_for(lambda: every_node_alive_on(cluster, [0, 1, 2], names), what="gossip")
    first, third = cluster.nodes[0], cluster.nodes[2]
    # The ring a cluster starts with: its cluster secret, as before keyrings.
    secret = identity(first).keys.secret
    assert ping_sealed_with(secret, first), "a ping sealed with the cluster's key is acked"
    listed = await cluster.get(0, "/v1/cluster/gossip-keys")
    assert [k["id"] for k in listed["keys"]] == [key_id(secret)]

    watch = AliveWatch(cluster)
    watch.up = {0, 1, 2}
    async with asyncio.TaskGroup() as tasks:
        watching = tasks.create_task(watch.run())

        # A rotation during which the third node is stopped once the new key is installed:
        # it misses the switch and the removal, and must come back speaking the new key.
        async def stop_third(line: str) -> None:
            if " installed " in line and third.running:
                watch.up.discard(2)
                await asyncio.to_thread(third.stop)

        lines = await rotate(first, grace=2.0, on_step=stop_third)
        print("\n".join(lines))
        assert not third.running
        steps = [line.split()[1] for line in lines[:-1]]
        assert steps[0] == "installed" and steps[-1] == "done", lines
        assert "removed" in steps, lines
        new = lines[-1].split()[-1]
        assert lines[-1] == f"gossip key rotated: primary key {new}"
        assert new != key_id(secret)

        before = await dropped_auth(cluster, 0)
        assert not ping_sealed_with(secret, first), "the removed key still opens packets"
        assert await dropped_auth(cluster, 0) > before

        refused = [await dropped_auth(cluster, i) for i in (0, 1)]
        third.start()
        await wait_for(
            lambda: every_node_alive_on(cluster, [0, 1, 2], names), timeout=60, what="n3 back"
        )
        watch.up.add(2)
        # It took the new ring before its first packet: nobody refused one of its packets,
        # and it refused none of theirs.
        assert [await dropped_auth(cluster, i) for i in (0, 1)] == refused
        assert await dropped_auth(cluster, 2) == 0

        async def third_ready() -> bool:
            return all(n["status"] == "ready" for n in await cluster.get(0, "/v1/nodes"))

        await wait_for(third_ready, what="n3 ready")
        ring = await cluster.get(2, "/v1/cluster/gossip-keys")
        assert ring["this_node"] == {"primary": new, "held": [new]}

        # A second rotation with every node up, then a node that joins afterwards.
        lines = await rotate(cluster.nodes[1], grace=0.5)
        print("\n".join(lines))
        newest = lines[-1].split()[-1]
        assert newest not in (new, key_id(secret))
        await cluster.add(cluster.nodes[3])
        everyone = {n.name for n in cluster.nodes}
        await wait_for(
            lambda: every_node_alive_on(cluster, [0, 1, 2, 3], everyone), what="n4 in gossip"
        )
        watch.up.add(3)

        async def held_everywhere() -> bool:
            ring = await cluster.get(3, "/v1/cluster/gossip-keys")
            return [(k["id"], sorted(k["held_by"])) for k in ring["keys"]] == [
                (newest, sorted(everyone))
            ]

        await wait_for(held_everywhere, what="the newest key held by all four nodes")
        looks = watch.looks
        await wait_for(lambda: _async(watch.looks > looks + 8), what="a few more looks")
        watching.cancel()
    assert watch.looks > 20
    assert watch.seen == [], f"members not alive while expected up: {watch.seen[:10]}"
    listing = must(shoal("cluster", "gossip-keys", addr=first.api))
    assert newest in listing and "yes" in listing


async def _async(value: bool) -> bool:
    return value


async def test_bad_rotation_input_is_refused_naming_the_field(cluster):
    await cluster.start(count=1)
    node = cluster.nodes[0]
    refused = shoal("cluster", "rotate-gossip-key", "--grace", "99999", addr=node.api)
    assert refused.returncode == 2, refused.stderr
    assert "grace" in refused.stderr and "between 0 and 300" in refused.stderr
    refused = shoal("cluster", "rotate-gossip-key", "--wait", "nan", addr=node.api)
    assert refused.returncode == 2 and "--wait" in refused.stderr
    async with node.client() as client:
        for body, field in (({"grace": "soon"}, "grace"), ({"wait": 0}, "wait"), ([], "body")):
            with pytest.raises(ApiError) as caught:
                await client.post("/v1/cluster/gossip-keys/rotate", body)
            assert (caught.value.status, caught.value.field) == (400, field), caught.value
        listed = await client.get("/v1/cluster/gossip-keys")
        # Admin only: an operator token may list the key ids, not rotate.
        made = await client.post("/v1/tokens", {"name": "ops", "role": "operator"})
    async with ShoalClient(node.api, made["token"], ssl_context=node.ssl_context) as operator:
        assert (await operator.get("/v1/cluster/gossip-keys"))["keys"] == listed["keys"]
        with pytest.raises(ApiError) as refused_rotation:
            await operator.post("/v1/cluster/gossip-keys/rotate", {})
        assert refused_rotation.value.status == 403
    assert len(listed["keys"]) == 1 and listed["keys"][0]["derived_from_cluster_secret"]
    # Nothing changed by refused requests; a rotation with `-o json`: a step a line.
    done = must(shoal("cluster", "rotate-gossip-key", "--grace", "0", "-o", "json", addr=node.api))
    steps = [json.loads(line) for line in done.splitlines()]
    assert [s["step"] for s in steps] == ["installed", "held", "primary", "removed", "done"]
