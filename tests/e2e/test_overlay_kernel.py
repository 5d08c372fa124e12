"""The overlay's kernel shell against a real kernel, in a host of the test bed: it creates a
VXLAN device on a network's bridge with the planned MTU and flooding entries, reads it back
as the plan's LinkState, follows a change of peers (learned entries towards a peer that left
go too), routes the VIPs to its VIP device with proxy ARP on the bridge, replaces its nftables
tables, and deletes the device and the VIP route of a network that is gone."""

from __future__ import annotations

import json
import sys

import pytest

pytestmark = pytest.mark.e2e

SCRIPT = """
import asyncio, json, subprocess
from netoverlay.overlay.kernel import OverlayKernel
from netoverlay.overlay.plan import plan_links, steps
from netoverlay.overlay.types import NodeOverlay, OverlayNetwork, ServiceOnNetwork

NET = OverlayNetwork("appnet", 4096, "10.200.0.0/20", "10.200.0.0/21", "10.200.0.0/26", "10.200.0.1",
                     services=(ServiceOnNetwork("web", "10.200.8.1", (), ("10.200.0.66",)),))
LOCAL = "{local}"

def overlay(*peers, networks=(NET,)):
    return NodeOverlay(LOCAL, (LOCAL, *peers), networks)

def fdb():
    return subprocess.run(["bridge", "fdb", "show", "dev", "svx4096"], capture_output=True, text=True).stdout

async def main():
    kernel = OverlayKernel("shoal_overlay_test")
    mtu = await kernel.underlay_mtu(LOCAL)
    seen = {{"mtu": mtu}}
    await kernel.apply(steps(plan_links(overlay("10.9.9.2", "10.9.9.3"), mtu), await kernel.read_links()))
    link = (await kernel.read_links())["svx4096"]
    seen["link"] = [link.vni, link.local, link.port, link.bridge, link.mtu, sorted(link.flood)]
    seen["again"] = [str(s) for s in steps(plan_links(overlay("10.9.9.2", "10.9.9.3"), mtu), await kernel.read_links())]
    subprocess.run(["bridge", "fdb", "add", "02:42:0a:c8:00:42", "dev", "svx4096", "dst", "10.9.9.3"], check=True)
    await kernel.apply(steps(plan_links(overlay("10.9.9.2"), mtu), await kernel.read_links()))
    seen["after_leave"] = fdb()
    await kernel.route_vips(overlay("10.9.9.2"))
    seen["vip_routes"] = subprocess.run(["ip", "route", "show", "dev", "shoal-vips"], capture_output=True, text=True).stdout
    seen["proxy_arp"] = [open(f"/proc/sys/net/ipv4/{{path}}").read().strip()
                         for path in ("conf/sov4096/proxy_arp", "neigh/sov4096/proxy_delay")]
    await kernel.sync_rules(overlay("10.9.9.2"))
    seen["rules"] = subprocess.run(["nft", "list", "table", "ip", "shoal_overlay_test"], capture_output=True, text=True).stdout
    seen["bridge_rules"] = subprocess.run(["nft", "list", "table", "bridge", "shoal_overlay_test"], capture_output=True, text=True).stdout
    await kernel.apply(steps(plan_links(overlay("10.9.9.2", networks=()), mtu), await kernel.read_links()))
    seen["left"] = sorted(await kernel.read_links())
    await kernel.route_vips(overlay("10.9.9.2", networks=()))
    seen["vip_routes_left"] = subprocess.run(["ip", "route", "show", "dev", "shoal-vips"], capture_output=True, text=True).stdout
    print(json.dumps(seen))

asyncio.run(main())
"""


def test_the_kernel_shell_applies_the_plan(netbed_factory):
    bed = netbed_factory(1)
    host = bed.hosts[0]
    host.run(["ip", "link", "add", "sov4096", "type", "bridge"])
    host.run(["ip", "link", "set", "sov4096", "up"])
    done = host.run([sys.executable, "-c", SCRIPT.format(local=host.address)], timeout=60)
    seen = json.loads(done.stdout)
    assert seen["mtu"] == 1500
    assert seen["link"] == [4096, host.address, 4789, "sov4096", 1450, ["10.9.9.2", "10.9.9.3"]]
    assert seen["again"] == [], "a device in step with the plan needs nothing"
    assert "dst 10.9.9.3" not in seen["after_leave"], seen["after_leave"]
    assert "00:00:00:00:00:00 dst 10.9.9.2" in seen["after_leave"]
    assert "ip daddr 10.200.8.1 jump vip_4096_0" in seen["rules"]
    assert "dnat to 10.200.0.66" in seen["rules"]
    assert seen["left"] == [], "the device of a network that is gone is deleted"
    assert seen["vip_routes"].split()[0] == "10.200.8.0/21", seen["vip_routes"]
    assert seen["proxy_arp"] == ["1", "0"], "the bridge answers ARP for the VIPs, at once"
    assert seen["vip_routes_left"] == "", "the VIP route of a network that is gone is removed"
    assert "arp daddr ip 10.200.8.0/21 drop" in seen["bridge_rules"]
