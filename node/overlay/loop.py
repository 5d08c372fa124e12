"""The overlay loop of one node: on every committed change and every gossip change (after a
short debounce, so a burst is one sync), it works out this node's overlay (`view`) and makes
the engine's networks, the kernel's VXLAN devices and flooding entries, the VIP ruleset and
the network-side DNS servers match it. A failed sync is retried on a timer.

Stopping leaves everything in place: tasks outlive their node by design and keep talking;
a restarted node converges from what it finds. A network removed from the cluster is
removed here (its engine network, its device, its rules and its DNS server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

from consensus.store import StateVersion
from netoverlay.gossip import GossipService
from netoverlay.lb import NftError
from netoverlay.overlay.kernel import OverlayKernel, OverlayKernelError
from netoverlay.overlay.plan import overlay_mtu, plan_links, steps
from netoverlay.overlay.resolver import NetworkResolver
from netoverlay.overlay.types import DEFAULT_VXLAN_PORT, NodeOverlay, OverlayNetwork
from node.overlay.docker_networks import DockerNetworks
from node.overlay.view import node_overlay

log = logging.getLogger(__name__)

# How long a task waits for this node to make its networks before it starts anyway.
NETWORK_WAIT = 30.0


@dataclass(frozen=True, slots=True)
class OverlayConfig:
    node_id: str
    local_address: str
    vxlan_port: int = DEFAULT_VXLAN_PORT
    # Where names outside the cluster are forwarded: the node's own resolvers by default.
    upstreams: tuple[str, ...] = field(default_factory=tuple)
    dns_port: int = 53
    debounce: float = 0.05
    retry_interval: float = 2.0

    @property
    def nft_table(self) -> str:
        return "shoal_overlay_" + re.sub(r"[^A-Za-z0-9_]", "_", self.node_id)


class Overlay:
    def __init__(self, config: OverlayConfig, *, gossip: GossipService,
                 read_state: Callable[[], StateVersion],
                 subscribe: Callable[[], asyncio.Event], networks: DockerNetworks) -> None:
        self.config = config
        self._gossip = gossip
        self._read_state = read_state
        self._wake = subscribe()
        self._networks = networks
        self.kernel = OverlayKernel(config.nft_table)
        self._resolvers: dict[str, tuple[str, NetworkResolver]] = {}
        self._underlay_mtu: Optional[int] = None
        self._unsubscribe: Optional[Callable[[], None]] = None
        self.problems: tuple[str, ...] = ()
        # The runtime networks the engine has, and an event set (then replaced) whenever
        # that set is read afresh: tasks wait on it for their networks.
        self._made: set[str] = set()
        self._made_changed = asyncio.Event()
        self.synced: Optional[NodeOverlay] = None

    async def start(self) -> None:
        self._unsubscribe = self._gossip.on_change(lambda _event: self._wake.set())
        underlay = await self.kernel.underlay_mtu(self.config.local_address)
        overlay_mtu(underlay)  # refuses an underlay too small to carry the overlay
        self._underlay_mtu = underlay

    async def run(self) -> None:
        retry = False
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.retry_interval if retry else None):
                    await self._wake.wait()
            await asyncio.sleep(self.config.debounce)
            self._wake.clear()
            try:
                retry = not await self.sync()
            except Exception as exc:  # the engine or the kernel failed us: retry, never end the node
                log.warning("overlay: sync failed, retrying: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
                self.problems = (f"sync failed: {exc}",)
                retry = True

    def view(self) -> NodeOverlay:
        with self._read_state() as state:
            return node_overlay(state, self.config.node_id, self.config.local_address,
                                self._gossip.table_items(), self._gossip.members(),
                                self.config.vxlan_port)

    async def sync(self) -> bool:
        """Converge once; False when something is left to retry (logged, in `problems`)."""
        overlay = self.view()
        assert self._underlay_mtu is not None, "start() the overlay first"
        made, problems = await self._networks.aconverge(overlay, overlay_mtu(self._underlay_mtu))
        self._made = made
        self._made_changed.set()
        self._made_changed = asyncio.Event()
        try:
            await self.kernel.apply(steps(plan_links(overlay, self._underlay_mtu),
                                          await self.kernel.read_links()))
            await self.kernel.route_vips(overlay)
            await self.kernel.sync_rules(overlay)
        except (OverlayKernelError, NftError, OSError) as exc:
            problems.append(f"kernel: {exc}")
        problems += await self._serve_dns(overlay.networks)
        if problems != list(self.problems) and problems:
            log.warning("overlay: %s", "; ".join(problems))
        self.problems = tuple(problems)
        self.synced = overlay
        return not problems

    async def networks_ready(self, runtime_networks: tuple[str, ...], timeout: float = NETWORK_WAIT) -> None:
        """Return once the engine has every one of `runtime_networks`, or after `timeout`
        (the start then fails with the engine's own reason, and the task is replaced)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not set(runtime_networks) <= self._made:
                    await self._made_changed.wait()

    async def _serve_dns(self, networks: tuple[OverlayNetwork, ...]) -> list[str]:
        """A resolver on this node's address in each network; the others stopped."""
        problems = []
        wanted = {n.name: n for n in networks if n.gateway}
        for name in sorted(set(self._resolvers) - set(wanted)):
            self._resolvers.pop(name)[1].stop()
        for name, network in sorted(wanted.items()):
            held = self._resolvers.get(name)
            if held is not None and held[0] == network.gateway:
                held[1].update(network)
                continue
            if held is not None:
                held[1].stop()
            resolver = NetworkResolver(network, self.config.upstreams)
            try:
                await resolver.start(network.gateway, self.config.dns_port)
            except OSError as exc:
                problems.append(f"cannot serve DNS for {name} on {network.gateway}:{self.config.dns_port}: {exc}")
                self._resolvers.pop(name, None)
                continue
            self._resolvers[name] = (network.gateway, resolver)
        return problems

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for _, resolver in self._resolvers.values():
            resolver.stop()
        self._resolvers = {}

    def status(self) -> dict:
        synced = self.synced
        mtu = overlay_mtu(self._underlay_mtu) if self._underlay_mtu else None
        return {"local_address": self.config.local_address, "mtu": mtu,
                "peers": list(synced.peers) if synced else [],
                "networks": [{"name": n.name, "vni": n.vni, "lease": n.lease, "gateway": n.gateway,
                              "services": {s.name: {"vip": s.vip, "tasks": list(s.tasks)} for s in n.services}}
                             for n in (synced.networks if synced else ())],
                "problems": list(self.problems)}
