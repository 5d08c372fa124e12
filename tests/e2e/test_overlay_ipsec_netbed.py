"""An encrypted overlay network in a real cluster: two Shoal nodes, each in its own network
namespace with its own Docker Engine. A Compose stack makes network `sealed` (`driver_opts:
{encrypted: ""}`, as Swarm reads it) and the plain network `clear`; `server` (on n1) serves
a different marker on each, `client` (on n0) fetches them by name while the test captures
the underlay link of n1.

The marker fetched over `clear` is on the wire; the one over `sealed` never is. On a kernel
with ESP and AES-GCM the client gets it (it travelled in ESP); on one without (this test
bed's), the nodes' policies drop it and each node's overlay status says what its kernel
lacks. A key rotation bumps the network's epoch. Removing the network takes its IPsec
policies off every host; so does removing a node (from itself, and from the others)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys

import aiohttp
import pytest

from node.client import ShoalClient
from node.devcluster.localcluster import wait_for
from tests.e2e.test_overlay_netbed import _container, _fetch
from tests.netbed.capture import Capture
from tests.safety.shoal_bed import API_PORT, BedCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

STACK = """
networks:
  sealed: {driver: overlay, driver_opts: {encrypted: ""}}
  clear: {}
services:
  server:
    image: {image}
    command: ["sh", "-c", "echo SEALED-MARKER-51c2 > /tmp/sealed.html && echo CLEAR-MARKER-0d9b > /tmp/clear.html && exec httpd -f -p 80 -h /tmp"]
    networks: [sealed, clear]
    deploy:
      placement: {constraints: ["node.hostname==n1"]}
  client:
    image: {image}
    command: ["sleep", "3600"]
    networks: [sealed, clear]
    deploy:
      placement: {constraints: ["node.hostname==n0"]}
"""

# Our policies on a host, read the way the node reads them.
POLICIES = "from netoverlay.overlay.ipsec_kernel import read_policies; print(len(read_policies()))"


def test_an_encrypted_network_never_crosses_the_underlay_in_clear(
    netbed_factory, busybox_image, tmp_path
):
    bed = netbed_factory(2)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        daemons = list(pool.map(lambda host: host.start_dockerd(), bed.hosts))
        list(pool.map(lambda daemon: daemon.load_from(busybox_image), daemons))
    asyncio.run(_scenario(bed, {f"n{d.host.index}": d for d in daemons}, busybox_image, tmp_path))


def _policies(host) -> int:
    return int(host.run([sys.executable, "-c", POLICIES]).stdout)


async def _scenario(bed, by_node, image, tmp_path) -> None:
    env = {name: {"DOCKER_HOST": daemon.url} for name, daemon in by_node.items()}
    async with aiohttp.ClientSession() as session:
        cluster = BedCluster(
            bed,
            tmp_path / "nodes",
            session,
            runtime="docker",
            extra_args=["--overlay", "--image-pull", "never"],
            node_env=env,
        )
        try:
            await cluster.form()
            client = ShoalClient(
                f"{bed.hosts[0].address}:{API_PORT}",
                cluster.api_token,
                session=session,
                ssl_context=cluster.ssl_context,
            )
            await client.request(
                "POST",
                "/v1/apply",
                data=STACK.replace("{image}", image).encode(),
                content_type="application/yaml",
            )
            sealed = await client.request("GET", "/v1/networks/sealed")
            assert (
                sealed["encrypted"]
                and not (await client.request("GET", "/v1/networks/clear"))["encrypted"]
            )
            await _check_traffic(bed, by_node, client)
            rotated = await client.request("POST", "/v1/networks/sealed/rotate-key")
            assert rotated == {"name": "sealed", "key_epoch": 1}
            await _check_removal(bed, client)
            await _check_node_removal(bed, client)
        except BaseException:
            print(cluster.log_tails())
            raise


async def _check_traffic(bed, by_node, client) -> None:
    n0 = by_node["n0"]

    async def clear_served() -> str:
        caller = _container(n0, "client")
        body = await asyncio.to_thread(_fetch, n0, caller, "http://server.clear/clear.html")
        assert body == "CLEAR-MARKER-0d9b", body
        return caller

    caller = await wait_for(
        clear_served, timeout=90, what="the client to reach the server over `clear`"
    )
    assert all(_policies(host) == 1 for host in bed.hosts), (
        "a policy towards the other node on each"
    )
    capture = Capture(bed.hosts[1].veth)
    try:
        clear = await asyncio.to_thread(_fetch, n0, caller, "http://server.clear/clear.html")
        sealed = await asyncio.to_thread(_fetch, n0, caller, "http://server.sealed/sealed.html", 5)
    finally:
        capture.close()
    wire = b"".join(capture.frames)
    assert clear == "CLEAR-MARKER-0d9b" and b"CLEAR-MARKER-0d9b" in wire, (
        "a plain network travels in clear"
    )
    assert b"SEALED-MARKER-51c2" not in wire, (
        "the encrypted network's payload crossed the underlay in clear"
    )
    status = await client.request("GET", "/v1/overlay")
    lacking = [p for p in status["problems"] if "CONFIG_INET_ESP" in p]
    if lacking:  # this kernel has no ESP: the policies drop what they cannot encrypt
        assert sealed == "", (
            f"the client reached the server over an unencrypted `sealed`: {sealed!r}"
        )
    else:
        assert sealed == "SEALED-MARKER-51c2", f"over `sealed`: {sealed!r} ({status['problems']})"
        assert 50 in capture.ip_protocols(), "the encrypted network travels in ESP"
    assert {n["name"]: n["encrypted"] for n in status["networks"]} == {
        "sealed": True,
        "clear": False,
    }


async def _check_removal(bed, client) -> None:
    for service in ("server", "client"):
        await client.request("DELETE", f"/v1/services/{service}")
    await client.request("DELETE", "/v1/networks/sealed")

    async def gone() -> bool:
        left = {host.name: _policies(host) for host in bed.hosts}
        assert not any(left.values()), left
        return True

    await wait_for(gone, timeout=30, what="the encrypted network's policies to leave every host")


async def _check_node_removal(bed, client) -> None:
    await client.request("POST", "/v1/networks", json_body={"name": "sealed2", "encrypted": True})

    async def guarded() -> bool:
        assert [_policies(host) for host in bed.hosts] == [1, 1]
        return True

    await wait_for(
        guarded, timeout=30, what="a policy on each host for an encrypted network made by the API"
    )
    (n1,) = [n for n in await client.request("GET", "/v1/nodes") if n["name"] == "n1"]
    await client.request("DELETE", f"/v1/nodes/{n1['id']}", params={"force": "1"})

    async def torn_down() -> bool:
        left = {host.name: _policies(host) for host in bed.hosts}
        assert not any(left.values()), left
        return True

    await wait_for(
        torn_down, timeout=30, what="the removed node and the one left to drop their policies"
    )
