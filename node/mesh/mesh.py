"""The node's service discovery: it announces its own healthy tasks in the gossip table, and
serves the routing mesh and DNS from what the whole cluster announces.

Two loops, each woken by events and never by a timer while things work:
- announce: on every committed change and every observation of the agent, write the
  difference between what this node holds in the table and what it should hold;
- route: on every gossip change (table or members) and every committed change, after a short
  debounce so that a burst is one sync, rebuild the view and converge the data plane to it.
  Only a port that could not be opened, or a failed sync, is retried on a timer.
Neither walks the cluster on a commit that is not about it: announcing reads this node's
tasks (an index) and the entries it holds (kept from the table's events), and the view is
rebuilt only when the services table (a version shares an unchanged table with the one
before) or the gossip table changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from consensus.store import StateVersion
from consensus.tasks import SERVICES, Service, Task, TaskReport, services, tasks_on
from consensus.wire import to_plain
from netoverlay.dns import DnsServer, ServiceRecord
from netoverlay.gossip import GossipService
from netoverlay.gossip.model import Event, TableEvent
from netoverlay.lb import DataPlane, DataplaneMode, NftError, open_dataplane
from netoverlay.lb.dataplane import ProxyPlane, SplitDataPlane
from netoverlay.lb.stats import ServiceStats
from netoverlay.lb.types import Backend, ServicePort, endpoints_for, routed_ports
from node.mesh.announce import Observed, changes, fold, own_tasks, task_of_key, wanted
from node.mesh.view import MeshView, build_view

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MeshConfig:
    node_id: str
    # Where published ingress ports listen on this node.
    ingress_address: str = "127.0.0.1"
    dns_address: str = "127.0.0.1"
    dns_port: int = 7423
    dataplane: DataplaneMode = "proxy"
    # The proxy's worker processes (SO_REUSEPORT, one per core is the point); 0 runs it in
    # the node's own event loop.
    lb_workers: int = 0
    # A burst of changes within this many seconds becomes one data plane sync.
    debounce: float = 0.05
    # How soon a port that could not be opened, or a failed sync, is tried again.
    retry_interval: float = 2.0
    stop_timeout: float = 5.0

    @property
    def nft_table(self) -> str:
        """Our own nftables table: several nodes on one machine must not replace each
        other's rules, and a restarted node replaces exactly the table it left behind."""
        return "shoal_" + re.sub(r"[^A-Za-z0-9_]", "_", self.node_id)


def _empty_view() -> MeshView:
    return MeshView((), {}, (), {})


class Mesh:
    """`read_state` returns the current version of the replicated state; `subscribe` returns a fresh
    event that is set after every committed change; `on_report` registers an observer of
    the agent's observations and returns its unsubscribe."""

    def __init__(
        self,
        config: MeshConfig,
        *,
        gossip: GossipService,
        read_state: Callable[[], StateVersion],
        subscribe: Callable[[], asyncio.Event],
        on_report: Callable[[Callable[[TaskReport], None]], Callable[[], None]],
    ) -> None:
        self.config = config
        self._gossip = gossip
        self._read_state = read_state
        self._announce_wake = subscribe()
        self._route_wake = subscribe()
        self._on_report = on_report
        self._observed: dict[str, Observed] = {}
        self._view = _empty_view()
        # This node's own endpoint entries in the gossip table (key -> value), kept from the
        # table's events so that announcing never walks every node's entries.
        self._held: dict[str, Any] = {}
        # What the last announcement was made from (this node's tasks and the services, as
        # a version shares them while unchanged), and whether an observation or a change to
        # the entries this node holds came since.
        self._announced_from: tuple[Mapping[str, Task], Mapping[str, Service]] | None = None
        self._announce_dirty = True
        self.announcements = 0
        # The version the current view was built from, and whether the gossip table or
        # members changed since.
        self._view_version: StateVersion | None = None
        self._gossip_changed = True
        self.views_built = 0
        # The data plane's input at its last successful sync: what it serves.
        self._synced: tuple[tuple[ServicePort, ...], dict[str, list[Backend]]] | None = None
        self._retry = False
        self.dataplane: DataPlane | None = None
        self.dns = DnsServer(self._resolve)
        self.dns_error = ""
        self._unsubscribe: list[Callable[[], None]] = []

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Open the data plane (ValueError when the asked-for one cannot run here) and the
        DNS server (a port in use is logged and shown in `status`, not fatal)."""
        config = self.config
        self.dataplane = await open_dataplane(
            config.dataplane,
            config.ingress_address,
            table=config.nft_table,
            workers=config.lb_workers,
        )
        try:
            await self.dns.start(config.dns_address, config.dns_port)
        except OSError as exc:
            self.dns_error = f"cannot serve DNS on {config.dns_address}:{config.dns_port}: {exc}"
            log.error("%s", self.dns_error)
        self._unsubscribe = [
            self._gossip.on_change(self._gossip_change),
            self._on_report(self._observe),
        ]
        me = self.config.node_id
        self._held = {
            e.key: e.value
            for e in self._gossip.table_items()
            if e.owner == me and task_of_key(e.key) is not None
        }

    def _gossip_change(self, event: Event) -> None:
        if (
            isinstance(event, TableEvent)
            and event.owner == self.config.node_id
            and task_of_key(event.key) is not None
        ):
            if event.entry is None:
                self._held.pop(event.key, None)
            else:
                self._held[event.key] = event.entry.value
            self._announce_dirty = True
        self._gossip_changed = True
        self._route_wake.set()

    async def run(self) -> None:
        """Announce and route until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._announce_loop())
            group.create_task(self._route_loop())

    async def stop(self) -> None:
        """Stop serving: DNS at once, the data plane within `stop_timeout` (its listeners
        close; with nftables our table is removed)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        self.dns.stop()
        if self.dataplane is not None:
            try:
                await asyncio.wait_for(self.dataplane.stop(), self.config.stop_timeout)
            except (TimeoutError, NftError) as exc:
                log.warning("mesh: data plane did not stop cleanly: %s", exc)
            self.dataplane = None

    # -- announcing this node's endpoints ----------------------------------------------
    def _observe(self, report: TaskReport) -> None:
        self._observed[report.task_id] = fold(self._observed.get(report.task_id), report)
        self._announce_dirty = True
        self._announce_wake.set()

    async def _announce_loop(self) -> None:
        while True:
            await self._announce_wake.wait()
            self._announce_wake.clear()
            self.announce()

    def announce(self) -> None:
        """Make this node's endpoint entries in the gossip table match its serving tasks."""
        with self._read_state() as state:
            mine, specs = tasks_on(state, self.config.node_id), services(state)
            last = self._announced_from
            if not self._announce_dirty and last and last[0] is mine and last[1] is specs:
                return  # the commits since were about other nodes
            own = own_tasks(state, self.config.node_id)
        self._announced_from = (mine, specs)
        self.announcements += 1
        # Observations of tasks that left the state are forgotten.
        self._observed = {t.id: self._observed[t.id] for t, _ in own if t.id in self._observed}
        diff = changes(self._held, wanted(own, self._observed))
        for key in diff.delete:
            self._gossip.local_delete(key)
        for key, value in diff.set.items():
            try:
                self._gossip.local_set(key, value)
            except ValueError as exc:  # too many ports to fit one gossip value
                log.error("mesh: cannot announce %s: %s", key, exc)
        # Cleared last: the table's events of these writes are already in `_held`.
        self._announce_dirty = False

    # -- routing and DNS ----------------------------------------------------------------
    def view(self) -> MeshView:
        """What the cluster announces now, as this node's gossip table and state show it."""
        with self._read_state() as state:
            return self._build_view(services(state))

    def _build_view(self, table: Mapping[str, Service]) -> MeshView:
        self.views_built += 1
        specs = [service.spec for service in table.values()]
        return build_view(specs, self._gossip.table_items(), self._gossip.members())

    def _resolve(self, name: str) -> ServiceRecord | None:
        return self._view.records.get(name)

    async def _route_loop(self) -> None:
        wake = self._route_wake
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.retry_interval if self._retry else None):
                    await wake.wait()
            await asyncio.sleep(self.config.debounce)
            wake.clear()
            await self.sync()

    async def sync(self) -> None:
        """Serve the current view: DNS at once, the data plane when its input changed."""
        state = self._read_state()
        unchanged = state.shares(self._view_version, SERVICES) and not self._gossip_changed
        if unchanged and not self._retry:
            return  # the commits since were about other rows: the view is what it was
        self._view_version, self._gossip_changed = state, False
        view = self._build_view(services(state))
        if view.problems != self._view.problems and view.problems:
            log.warning("mesh: ignoring malformed endpoint entries: %s", "; ".join(view.problems))
        self._view = view
        wanted_input = (view.ports, view.endpoints)
        if self.dataplane is None or (wanted_input == self._synced and not self._retry):
            return
        try:
            await self.dataplane.sync(list(view.ports), view.endpoints)
        except (NftError, ValueError, OSError) as exc:
            log.error("mesh: data plane sync failed, retrying: %s", exc)
            self._retry = True
            return
        self._synced = wanted_input
        self._retry = bool(self.failed_ports())

    # -- status -------------------------------------------------------------------------
    def _proxy(self) -> ProxyPlane | None:
        plane = self.dataplane
        if isinstance(plane, SplitDataPlane):
            return plane.proxy
        return cast(ProxyPlane, plane)  # open_dataplane gives a split or a proxy

    @property
    def dataplane_kind(self) -> str:
        if self.dataplane is None:
            return "stopped"
        return "nft" if isinstance(self.dataplane, SplitDataPlane) else "proxy"

    def ingress_stats(self) -> dict[int, ServiceStats]:
        """The proxy's counters of each port it serves, by published port (nftables DNAT
        keeps none: its ports are missing here)."""
        proxy = self._proxy()
        return proxy.stats() if proxy is not None else {}

    def failed_ports(self) -> dict[int, str]:
        proxy = self._proxy()
        return dict(proxy.failed_ports) if proxy is not None else {}

    def serving(self) -> list[dict[str, Any]]:
        """Each ingress port the data plane was last given, with its endpoints."""
        if self._synced is None:
            return []
        ports, endpoints = self._synced
        failed = self.failed_ports()
        return [
            {
                **to_plain(port),
                "listening": number not in failed,
                "endpoints": [f"{e.address}:{e.port}" for e in endpoints_for(port, endpoints)],
            }
            for protocol in ("tcp", "udp")
            for number, port in sorted(routed_ports(list(ports), protocol).items())
        ]

    def status(self) -> dict[str, Any]:
        config, view = self.config, self._view
        proxy = self._proxy()
        return {
            "node_id": config.node_id,
            "dataplane": self.dataplane_kind,
            "ingress_address": config.ingress_address,
            "dns": {"address": f"{config.dns_address}:{config.dns_port}", "error": self.dns_error},
            "serving": self.serving(),
            "failed_ports": {str(n): reason for n, reason in self.failed_ports().items()},
            "proxy_stats": [to_plain(s) for s in proxy.stats().values()] if proxy else [],
            "problems": list(view.problems),
        }
