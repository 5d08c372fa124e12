"""Choosing and composing data planes: `--lb-dataplane auto|nft|proxy`.

The kernel cannot add a PROXY protocol header or close idle connections, so with nftables
the ports that ask for either are still served by the proxy; everything else is DNAT.
"""

from __future__ import annotations

import os
import shutil
from typing import Literal, Protocol

from netoverlay.lb.nft import NftConfig, NftDataPlane, NftError, render_delete, run_nft
from netoverlay.lb.proxy import ProxyConfig, ProxyDataPlane
from netoverlay.lb.stats import ServiceStats
from netoverlay.lb.types import Backend, ServicePort
from netoverlay.lb.workers import WorkerPool

DataplaneMode = Literal["auto", "nft", "proxy"]


class DataPlane(Protocol):
    async def sync(self, ports: list[ServicePort], endpoints: dict[str, list[Backend]]) -> None: ...

    async def stop(self) -> None: ...


class ProxyPlane(DataPlane, Protocol):
    """The proxy, in the node's own event loop (`ProxyDataPlane`) or in worker processes
    (`WorkerPool`): what the node reads back from it."""

    @property
    def failed_ports(self) -> dict[int, str]: ...

    def stats(self) -> dict[int, ServiceStats]: ...


def needs_proxy(port: ServicePort) -> bool:
    """Whether serving `port` takes userspace features the kernel data plane lacks."""
    return bool(port.proxy_protocol) or port.idle_timeout is not None


class SplitDataPlane:
    """nftables for the ports it can serve, the proxy for the rest."""

    def __init__(self, kernel: NftDataPlane, proxy: ProxyPlane) -> None:
        self.kernel = kernel
        self.proxy = proxy

    async def sync(self, ports: list[ServicePort], endpoints: dict[str, list[Backend]]) -> None:
        # The proxy first: a port moving from nft to the proxy then has its listener ready
        # before the DNAT rule that would otherwise answer for it goes away.
        await self.proxy.sync([p for p in ports if needs_proxy(p)], endpoints)
        await self.kernel.sync([p for p in ports if not needs_proxy(p)], endpoints)

    async def stop(self) -> None:
        try:
            await self.kernel.stop()
        finally:
            await self.proxy.stop()


async def nft_problem(config: NftConfig) -> str | None:
    """None when this process can program nftables, otherwise why not. Checks by creating and
    deleting an empty table of ours, the least any sync will need."""
    if os.geteuid() != 0:
        return "nftables needs root"
    if shutil.which(config.nft) is None:
        return f"{config.nft} is not installed"
    try:
        await run_nft(config, f"table ip {config.table} {{}}\n" + render_delete(config))
    except NftError as exc:
        return str(exc)
    return None


def choose_dataplane(mode: DataplaneMode, nft_unavailable: str | None) -> Literal["nft", "proxy"]:
    """The data plane to run: `auto` takes nftables when it works."""
    if mode == "proxy":
        return "proxy"
    if mode == "nft":
        if nft_unavailable:
            raise ValueError(f"lb-dataplane: nft was asked for but {nft_unavailable}")
        return "nft"
    if mode == "auto":
        return "proxy" if nft_unavailable else "nft"
    raise ValueError(f"lb-dataplane: must be auto, nft or proxy, not {mode!r}")


async def open_proxy(config: ProxyConfig, workers: int) -> ProxyPlane:
    """The proxy in this event loop (`workers` 0), or in that many worker processes."""
    if workers == 0:
        return ProxyDataPlane(config)
    pool = WorkerPool(config, workers)
    await pool.start()
    return pool


async def open_dataplane(
    mode: DataplaneMode,
    host: str,
    *,
    table: str = "shoal",
    proxy: ProxyConfig | None = None,
    workers: int = 0,
) -> DataPlane:
    """The data plane for `mode`, publishing on `host`; its proxy runs in `workers` worker
    processes (0: in this event loop)."""
    proxy_config = proxy or ProxyConfig(host=host)
    if mode == "proxy":
        return await open_proxy(proxy_config, workers)
    try:
        nft_config = NftConfig(host=host, table=table)
        problem = await nft_problem(nft_config)
    except ValueError as exc:  # e.g. an IPv6 address, which our nft table cannot serve
        problem = str(exc)
    if choose_dataplane(mode, problem) == "proxy":
        return await open_proxy(proxy_config, workers)
    return SplitDataPlane(NftDataPlane(nft_config), await open_proxy(proxy_config, workers))
