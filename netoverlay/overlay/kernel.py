"""The thin shell between the overlay's plans and the kernel: netlink through pyroute2 for
VXLAN devices, flooding entries and VIP routes, `nft -f` for the ruleset. It decides
nothing: it reads what the kernel has, applies `plan.steps`, and replaces the nft table
when its rendering changed.

pyroute2's netlink sockets need the stock asyncio loop (uvloop refuses their address
family), so every netlink exchange runs on a stock loop in a worker thread: the node's own
loop never blocks on the kernel.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netoverlay.lb.nft import NftConfig, delete_table, run_nft
from netoverlay.overlay.plan import (
    VXLAN_PREFIX,
    AddFlood,
    CreateLink,
    DeleteLink,
    LinkState,
    RemoveFlood,
    Step,
)
from netoverlay.overlay.ruleset import delete_bridge_table, render_ruleset, vip_range
from netoverlay.overlay.types import VIP_DEVICE, NodeOverlay

log = logging.getLogger(__name__)

_FLOOD_MAC = "00:00:00:00:00:00"

T = TypeVar("T")


def _on_stock_loop(work: Callable[[], Awaitable[T]]) -> T:
    loop = asyncio.SelectorEventLoop()
    try:
        return loop.run_until_complete(work())
    finally:
        loop.close()


async def netlink(work: Callable[[], Awaitable[T]]) -> T:
    """`await work()` on a stock event loop of a worker thread."""
    return await asyncio.to_thread(_on_stock_loop, work)


def _enable_proxy_arp(bridge: str) -> None:
    """Answer ARP on `bridge` for addresses routed elsewhere (the VIPs), at once: a request
    is broadcast, and the kernel delays its proxy replies to broadcasts by `proxy_delay`
    (up to 0.8 s by default)."""
    for path, value in (
        (f"/proc/sys/net/ipv4/conf/{bridge}/proxy_arp", "1"),
        (f"/proc/sys/net/ipv4/neigh/{bridge}/proxy_delay", "0"),
    ):
        try:
            Path(path).write_text(value)
        except FileNotFoundError:  # no bridge: the engine failed to make it (that sync retries)
            pass
        except OSError as exc:
            raise OverlayKernelError(f"cannot set {path}: {exc}") from exc


class OverlayKernelError(RuntimeError):
    """The kernel refused a change; the text says which and why."""


class OverlayKernel:
    """One node's overlay devices and rules. Several calls never interleave."""

    def __init__(self, table: str, nft: str = "nft") -> None:
        self.table = table
        self._nft = NftConfig(table=table, nft=nft)
        self._rules: str | None = None
        self._lock = asyncio.Lock()

    async def underlay_mtu(self, local_address: str) -> int:
        """The MTU of the interface that holds `local_address`."""
        return await netlink(lambda: self._underlay_mtu(local_address))

    async def _underlay_mtu(self, local_address: str) -> int:
        async with AsyncIPRoute() as ipr:
            addresses = [
                (addr.get("IFA_LOCAL") or addr.get("IFA_ADDRESS"), addr["index"])
                async for addr in await ipr.addr("dump")
            ]
            index = next((i for address, i in addresses if address == local_address), None)
            if index is None:
                raise OverlayKernelError(
                    f"local_address: no interface here holds {local_address} "
                    f"(it has {sorted(str(a) for a, _ in addresses)})"
                )
            return int((await ipr.link("get", index=index))[0].get("IFLA_MTU"))

    async def read_links(self) -> dict[str, LinkState]:
        """Our VXLAN devices as the kernel has them."""
        return await netlink(self._read_links)

    async def _read_links(self) -> dict[str, LinkState]:
        found = {}
        async with AsyncIPRoute() as ipr:
            links = [link async for link in await ipr.link("dump")]
            names = {link["index"]: link.get("IFLA_IFNAME") for link in links}
            for link in links:
                name = link.get("IFLA_IFNAME") or ""
                if (
                    not name.startswith(VXLAN_PREFIX)
                    or link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) != "vxlan"
                ):
                    continue
                info = link.get(("IFLA_LINKINFO", "IFLA_INFO_DATA"))
                flood = frozenset(
                    [
                        entry.get("NDA_DST")
                        async for entry in await ipr.fdb("dump", ifindex=link["index"])
                        if entry.get("NDA_LLADDR") == _FLOOD_MAC and entry.get("NDA_DST")
                    ]
                )
                found[name] = LinkState(
                    name,
                    int(info.get("IFLA_VXLAN_ID")),
                    info.get("IFLA_VXLAN_LOCAL") or "",
                    int(info.get("IFLA_VXLAN_PORT") or 0),
                    names.get(link.get("IFLA_MASTER"), "") or "",
                    int(link.get("IFLA_MTU")),
                    flood,
                )
        return found

    async def apply(self, steps: Iterable[Step]) -> None:
        todo = list(steps)
        if todo:
            async with self._lock:
                await netlink(lambda: self._apply(todo))

    async def _apply(self, steps: list[Step]) -> None:
        async with AsyncIPRoute() as ipr:
            for step in steps:
                try:
                    await self._apply_one(ipr, step)
                except NetlinkError as exc:
                    raise OverlayKernelError(f"{type(step).__name__} {step}: {exc}") from exc

    async def _index(self, ipr: AsyncIPRoute, name: str) -> int:
        found: list[int] = await ipr.link_lookup(ifname=name)
        if not found:
            raise OverlayKernelError(f"no interface named {name!r}")
        return found[0]

    async def _apply_one(self, ipr: AsyncIPRoute, step: Step) -> None:
        if isinstance(step, DeleteLink):
            await ipr.link("del", index=await self._index(ipr, step.vxlan))
        elif isinstance(step, CreateLink):
            plan = step.plan
            bridge = await self._index(ipr, plan.bridge)
            await ipr.link(
                "add",
                ifname=plan.vxlan,
                kind="vxlan",
                vxlan_id=plan.vni,
                vxlan_local=plan.local,
                vxlan_port=plan.port,
                vxlan_learning=1,
            )
            vxlan = await self._index(ipr, plan.vxlan)
            await ipr.link("set", index=vxlan, master=bridge, mtu=plan.mtu, state="up")
        elif isinstance(step, AddFlood):
            await ipr.fdb(
                "append",
                ifindex=await self._index(ipr, step.vxlan),
                lladdr=_FLOOD_MAC,
                dst=step.peer,
            )
        elif isinstance(step, RemoveFlood):
            # The flooding entry and every address learned behind that node: none is left
            # pointing at a node that left (learned entries would otherwise age out in 300 s).
            index = await self._index(ipr, step.vxlan)
            towards = [
                entry.get("NDA_LLADDR")
                async for entry in await ipr.fdb("dump", ifindex=index)
                if entry.get("NDA_DST") == step.peer
            ]
            for lladdr in towards:
                await ipr.fdb("del", ifindex=index, lladdr=lladdr, dst=step.peer)

    async def route_vips(self, overlay: NodeOverlay) -> None:
        """Each network's VIP range routed to this node's VIP device, and proxy ARP on each
        bridge: a task, to which the VIPs of its networks are on-link, gets this node's
        address for a VIP, and the ruleset's prerouting hook translates what it sends there
        (the route goes to another device than the bridge: that is when the kernel answers
        ARP for an address it does not hold). Connections this node makes itself to a VIP
        take the same route and are translated in the output hook. Routes of networks gone
        are removed."""
        async with self._lock:
            await netlink(lambda: self._route_vips(overlay))

    async def _route_vips(self, overlay: NodeOverlay) -> None:
        async with AsyncIPRoute() as ipr:
            if not await ipr.link_lookup(ifname=VIP_DEVICE):
                # A bridge with no port: what is routed to it goes nowhere (a dummy device
                # would do, but kernels without the dummy driver have bridges).
                await ipr.link("add", ifname=VIP_DEVICE, kind="bridge")
            device = await self._index(ipr, VIP_DEVICE)
            await ipr.link("set", index=device, state="up")
            wanted = {vip_range(network) for network in overlay.networks}
            for route in [r async for r in await ipr.route("dump")]:
                destination = f"{route.get('RTA_DST')}/{route['dst_len']}"
                if (
                    route["family"] == socket.AF_INET
                    and route.get("RTA_OIF") == device
                    and destination not in wanted
                ):
                    await ipr.route("del", dst=destination, oif=device)
            for destination in sorted(wanted):
                await ipr.route("replace", dst=destination, oif=device)
        for network in overlay.networks:
            _enable_proxy_arp(network.bridge)

    async def teardown(self) -> None:
        """Remove everything of ours from the kernel: the VXLAN devices, the VIP device (with
        its routes) and both nftables tables. The bridges are the engine's."""
        async with self._lock:
            await netlink(self._delete_devices)
            await run_nft(self._nft, delete_table(self.table) + delete_bridge_table(self.table))
            self._rules = None

    async def _delete_devices(self) -> None:
        async with AsyncIPRoute() as ipr:
            for link in [link async for link in await ipr.link("dump")]:
                name = link.get("IFLA_IFNAME") or ""
                kind = link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))
                if (name.startswith(VXLAN_PREFIX) and kind == "vxlan") or (
                    name == VIP_DEVICE and kind == "bridge"
                ):
                    await ipr.link("del", index=link["index"])

    async def sync_rules(self, overlay: NodeOverlay) -> None:
        script = render_ruleset(overlay, self.table)
        async with self._lock:
            if script != self._rules:
                await run_nft(self._nft, script)
                self._rules = script
