"""The overlay loop of one node: on every committed change and every gossip change (after a
short debounce, so a burst is one sync), it works out this node's overlay (`view`) and makes
the engine's networks, the kernel's VXLAN devices and flooding entries, the IPsec policies
and associations of encrypted networks, the VIP ruleset and the network-side DNS servers
match it. A failed sync is retried on a timer, and a key rotation's next phase wakes it.
A commit that changed neither table the view is made of (services, networks: a version
shares an unchanged table with the one before) wakes it for nothing: a commit about tasks
costs this loop a comparison of references, not a walk over every service and the kernel.

Stopping leaves everything in place: tasks outlive their node by design and keep talking;
a restarted node converges from what it finds. A node removed from the cluster (`shoal node
rm`) tears everything down: its lease may go to another node. A network removed from the
cluster is removed here (its engine network, its device, its rules and its DNS server).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.networks import NETWORKS
from consensus.store import StateVersion
from consensus.tasks import SERVICES
from netoverlay.gossip import GossipService
from netoverlay.lb import NftError
from netoverlay.overlay.ipsec import (
    AddPolicy,
    AddState,
    IpsecPlan,
    IpsecStep,
    ipsec_steps,
    plan_ipsec,
    vni_of,
)
from netoverlay.overlay.ipsec_kernel import IpsecKernel, IpsecKernelError
from netoverlay.overlay.kernel import OverlayKernel, OverlayKernelError
from netoverlay.overlay.plan import overlay_mtu, plan_links, steps
from netoverlay.overlay.resolver import NetworkResolver
from netoverlay.overlay.types import DEFAULT_VXLAN_PORT, NodeOverlay, OverlayNetwork
from node.overlay.docker_networks import DockerNetworks
from node.overlay.memberships import EngineMemberships
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
    def __init__(
        self,
        config: OverlayConfig,
        *,
        gossip: GossipService,
        read_state: Callable[[], StateVersion],
        subscribe: Callable[[], asyncio.Event],
        networks: DockerNetworks,
        ipsec_key: bytes,
    ) -> None:
        self.config = config
        self._gossip = gossip
        self._read_state = read_state
        self._wake = subscribe()
        self._networks = networks
        self.memberships = EngineMemberships(networks.attachments)
        self.kernel = OverlayKernel(config.nft_table)
        self.ipsec = IpsecKernel()
        self._ipsec_key = ipsec_key
        # When a key rotation's next phase is due (the plan changes by itself then).
        self._ipsec_change: float | None = None
        self._resolvers: dict[str, tuple[str, NetworkResolver]] = {}
        self._underlay_mtu: int | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.problems: tuple[str, ...] = ()
        # The runtime networks the engine has, and an event set (then replaced) whenever
        # that set is read afresh: tasks wait on it for their networks.
        self._made: set[str] = set()
        self._made_changed = asyncio.Event()
        self.synced: NodeOverlay | None = None
        # The version the last sync was made from, and whether gossip changed since.
        self._synced_version: StateVersion | None = None
        self._gossip_changed = True

    async def start(self) -> None:
        self._unsubscribe = self._gossip.on_change(self._gossip_change)
        underlay = await self.kernel.underlay_mtu(self.config.local_address)
        overlay_mtu(underlay)  # refuses an underlay too small to carry the overlay
        self._underlay_mtu = underlay

    def _gossip_change(self, _event: object) -> None:
        self._gossip_changed = True
        self._wake.set()

    def _inputs_unchanged(self) -> bool:
        with self._read_state() as state:
            unchanged = state.shares(self._synced_version, SERVICES, NETWORKS)
        return (
            unchanged
            and not self._gossip_changed
            and (self._ipsec_change is None or time.time() < self._ipsec_change)
        )

    async def run(self) -> None:
        retry = False
        while True:
            waits = [self.config.retry_interval] if retry else []
            if self._ipsec_change is not None:
                waits.append(max(0.0, self._ipsec_change - time.time()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(waits, default=None)):
                    await self._wake.wait()
            await asyncio.sleep(self.config.debounce)
            self._wake.clear()
            if not retry and self._inputs_unchanged():
                continue
            try:
                retry = not await self.sync()
            except (
                Exception
            ) as exc:  # the engine or the kernel failed us: retry, never end the node
                log.warning(
                    "overlay: sync failed, retrying: %s",
                    exc,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                self.problems = (f"sync failed: {exc}",)
                retry = True

    def view(self) -> NodeOverlay:
        with self._read_state() as state:
            return node_overlay(
                state,
                self.config.node_id,
                self.config.local_address,
                self._gossip.table_items(),
                self._gossip.members(),
                self.config.vxlan_port,
            )

    async def sync(self) -> bool:
        """Converge once; False when something is left to retry (logged, in `problems`)."""
        self._synced_version = self._read_state()
        self._gossip_changed = False
        overlay = self.view()
        assert self._underlay_mtu is not None, "start() the overlay first"
        made, problems = await self._networks.aconverge(overlay, overlay_mtu(self._underlay_mtu))
        self._made = made
        self._made_changed.set()
        self._made_changed = asyncio.Event()
        plan = plan_ipsec(overlay, self._ipsec_key, time.time())
        self._ipsec_change = plan.next_change
        unguarded, removals = await self._guard(plan, problems)
        try:
            # The rules first: they mark an encrypted network's VXLAN for its policies
            # before its device exists. Its device waits for its policies.
            await self.kernel.sync_rules(overlay)
            carried = dataclasses.replace(
                overlay, networks=tuple(n for n in overlay.networks if n.vni not in unguarded)
            )
            await self.kernel.apply(
                steps(plan_links(carried, self._underlay_mtu), await self.kernel.read_links())
            )
            await self.kernel.route_vips(overlay)
            await self.ipsec.apply(removals)
        except (OverlayKernelError, NftError, IpsecKernelError, OSError) as exc:
            problems.append(f"kernel: {exc}")
        try:
            await self.memberships.reload()
        except Exception as exc:  # the engine failed us: the resolvers ask again on a miss
            problems.append(f"cannot read which networks the tasks are on: {exc}")
        problems += await self._serve_dns(overlay.networks)
        if problems != list(self.problems) and problems:
            log.warning("overlay: %s", "; ".join(problems))
        self.problems = tuple(problems)
        self.synced = overlay
        return not problems

    async def _guard(
        self, plan: IpsecPlan, problems: list[str]
    ) -> tuple[set[int], list[IpsecStep]]:
        """Install the policies and associations `plan` adds. Returns the VNIs of encrypted
        networks some policy of which is missing (their devices are not made, or are taken
        down: without its policies a network's VXLAN would leave in clear), and the steps
        that remove what is no longer wanted (run once the devices are in step)."""
        wanted_vnis = {vni_of(p.mark) for p in plan.policies}
        try:
            todo = ipsec_steps(plan, *await self.ipsec.installed())
            adding = [s for s in todo if isinstance(s, (AddPolicy, AddState))]
            try:
                await self.ipsec.apply(adding)
            except IpsecKernelError as exc:
                problems.append(f"kernel: {exc}")
            missing = plan.policies - (await self.ipsec.installed())[1] if adding else set()
        except (IpsecKernelError, OSError) as exc:
            if plan.policies:  # a kernel without XFRM matters only to encrypted networks
                problems.append(f"kernel: {exc}")
            return wanted_vnis, []
        unguarded = {vni_of(p.mark) for p in missing}
        if unguarded:
            problems.append(
                f"kernel: no IPsec policy for encrypted VNI(s) {sorted(unguarded)}: "
                "their devices stay down"
            )
        return unguarded, [s for s in todo if s not in adding]

    async def networks_ready(
        self, runtime_networks: tuple[str, ...], timeout: float = NETWORK_WAIT
    ) -> None:
        """Return once the engine has every one of `runtime_networks`, or after `timeout`
        (the start then fails with the engine's own reason, and the task is replaced)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not set(runtime_networks) <= self._made:
                    await self._made_changed.wait()

    async def _serve_dns(self, networks: tuple[OverlayNetwork, ...]) -> list[str]:
        """A resolver on this node's address in each network, answering a task for every
        network it is on; the others stopped."""
        problems = []
        wanted = {n.name: n for n in networks if n.gateway}
        everyone = {n.name: n for n in networks}
        for name in sorted(set(self._resolvers) - set(wanted)):
            self._resolvers.pop(name)[1].stop()
        for name, network in sorted(wanted.items()):
            held = self._resolvers.get(name)
            if held is not None and held[0] == network.gateway:
                held[1].update(network, everyone)
                continue
            if held is not None:
                held[1].stop()
            resolver = NetworkResolver(network, self.config.upstreams, memberships=self.memberships)
            resolver.update(network, everyone)
            try:
                await resolver.start(network.gateway, self.config.dns_port)
            except OSError as exc:
                problems.append(
                    f"cannot serve DNS for {name} on {network.gateway}:{self.config.dns_port}: {exc}"
                )
                self._resolvers.pop(name, None)
                continue
            self._resolvers[name] = (network.gateway, resolver)
        return problems

    async def stop(self, teardown: bool = False) -> None:
        """Stop serving DNS; with `teardown` (this node left the cluster) also remove its
        engine networks, devices, routes and rules."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for _, resolver in self._resolvers.values():
            resolver.stop()
        self._resolvers = {}
        if teardown:
            problems = await asyncio.to_thread(self._networks.remove_all)
            try:
                await self.kernel.teardown()
                await self.ipsec.apply(
                    ipsec_steps(IpsecPlan(frozenset(), frozenset()), *await self.ipsec.installed())
                )
            except (OverlayKernelError, NftError, IpsecKernelError, OSError) as exc:
                problems.append(f"kernel: {exc}")
            for problem in problems:
                log.warning("overlay: teardown: %s", problem)

    def status(self) -> dict:
        synced = self.synced
        mtu = overlay_mtu(self._underlay_mtu) if self._underlay_mtu else None
        return {
            "local_address": self.config.local_address,
            "mtu": mtu,
            "peers": list(synced.peers) if synced else [],
            "networks": [
                {
                    "name": n.name,
                    "vni": n.vni,
                    "lease": n.lease,
                    "gateway": n.gateway,
                    "encrypted": n.encrypted,
                    "key_epoch": n.key_epoch,
                    "services": {
                        s.name: {"vip": s.vip, "tasks": list(s.tasks)} for s in n.services
                    },
                }
                for n in (synced.networks if synced else ())
            ],
            "problems": list(self.problems),
        }
