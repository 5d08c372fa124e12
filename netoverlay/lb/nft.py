"""The kernel data plane: nftables DNAT from each published port to its endpoints.

TCP and UDP alike: conntrack keeps a UDP flow on the endpoint its first datagram was sent to
until the flow idles out, which is the affinity a datagram service needs.

One table of our own (`table ip shoal`) holds everything: a `prerouting` hook for connections
arriving from other hosts, an `output` hook for connections made on this host (locally
generated packets never pass prerouting), a chain per published port that picks a backend
with `numgen random` over weight ranges, and masquerade for translated connections that leave
this host, so replies come back through it. Every sync rewrites the whole table in one
`nft -f` transaction (create, delete, recreate), so a change is atomic: no packet sees half a
ruleset. Established connections keep their conntrack translation, so an endpoint removed
from the rules drains by itself.

Rendering is pure (`render_table`); `NftDataPlane` only runs `nft`, as a subprocess, so the
event loop never blocks on it. IPv4 only: endpoints with IPv6 addresses are left out.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass

from netoverlay.lb.types import Backend, ServicePort, endpoints_for, routed_ports

log = logging.getLogger(__name__)


class NftError(RuntimeError):
    """`nft` refused a ruleset or could not run."""


@dataclass(frozen=True, slots=True)
class NftConfig:
    # The address published ports are reachable on (the node's advertise address).
    host: str = "127.0.0.1"
    table: str = "shoal"
    nft: str = "nft"

    def __post_init__(self) -> None:
        if ipaddress.ip_address(self.host).version != 4:
            raise ValueError(f"host: the nftables data plane is IPv4 only, not {self.host!r}")
        if not self.table.replace("_", "").isalnum():
            raise ValueError(f"table: must be letters, digits and '_', not {self.table!r}")


def _ipv4(endpoint: Backend) -> bool:
    return ipaddress.ip_address(endpoint.address).version == 4


def _backend_map(endpoints: list[Backend]) -> tuple[int, str]:
    """(modulus, map body): each endpoint owns a range of numgen values as wide as its weight."""
    entries, start = [], 0
    for endpoint in sorted(endpoints, key=lambda e: e.key):
        end = start + endpoint.weight - 1
        key = str(start) if start == end else f"{start}-{end}"
        entries.append(f"{key} : {endpoint.address} . {endpoint.port}")
        start = end + 1
    return start, ", ".join(entries)


def chain_name(port: ServicePort) -> str:
    # TCP chains keep their historical name, so a node upgraded in place rewrites nothing.
    suffix = "" if port.protocol == "tcp" else f"_{port.protocol}"
    return f"svc_{port.published_port}{suffix}"


def _service_chain(port: ServicePort, endpoints: list[Backend]) -> str:
    lines = [f"\tchain {chain_name(port)} {{"]
    if endpoints:
        modulus, entries = _backend_map(endpoints)
        lines.append(
            f"\t\tmeta l4proto {port.protocol} dnat ip to numgen random mod {modulus}"
            f" map {{ {entries} }}"
        )
    # With no endpoints the connection goes on to the published address itself and is refused.
    lines.append("\t}")
    return "\n".join(lines)


def render_table(
    config: NftConfig, ports: list[ServicePort], endpoints: dict[str, list[Backend]]
) -> str:
    """The nft script that replaces our table with one serving `ports`. Deterministic: the same
    input renders the same text, so an unchanged table is not rewritten."""
    routed = [
        port
        for protocol in ("tcp", "udp")
        for _, port in sorted(routed_ports(ports, protocol).items())
    ]
    jumps = [
        f"\t\tip daddr {config.host} {p.protocol} dport {p.published_port} jump {chain_name(p)}"
        for p in routed
    ]
    chains = [
        _service_chain(port, [e for e in endpoints_for(port, endpoints) if _ipv4(e)])
        for port in routed
    ]
    body = [
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        *jumps,
        "\t}",
        "\tchain output {",
        "\t\ttype nat hook output priority -100; policy accept;",
        *jumps,
        "\t}",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        # Replies from a backend on another host must come back here to be un-translated.
        # Backends on this host answer through loopback and keep seeing the client's address.
        '\t\tct status dnat oifname != "lo" masquerade',
        "\t}",
        *chains,
    ]
    return "\n".join(
        [*render_delete(config).splitlines(), f"table ip {config.table} {{", *body, "}", ""]
    )


def render_delete(config: NftConfig) -> str:
    return delete_table(config.table)


def delete_table(table: str) -> str:
    """A script that removes `table`. Declaring the table first makes the delete valid
    whether or not it exists."""
    return f"table ip {table} {{}}\ndelete table ip {table}\n"


async def run_nft(config: NftConfig, script: str) -> None:
    """Apply `script` as one transaction."""
    try:
        process = await asyncio.create_subprocess_exec(
            config.nft,
            "-f",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise NftError(f"cannot run {config.nft}: {exc}") from exc
    try:
        _, stderr = await process.communicate(script.encode())
    except asyncio.CancelledError:
        # A ruleset that lands after our caller moved on (say, after a stop's delete) would
        # outlive the node: end the transaction's process before letting go.
        if process.returncode is None:
            process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise NftError(f"nft -f failed ({process.returncode}): {stderr.decode().strip()}")


class NftDataPlane:
    """Keeps our nftables table equal to the rendering of the latest sync."""

    def __init__(self, config: NftConfig = NftConfig()) -> None:
        self.config = config
        self._applied: str | None = None
        self._lock = asyncio.Lock()

    async def sync(self, ports: list[ServicePort], endpoints: dict[str, list[Backend]]) -> None:
        script = render_table(self.config, ports, endpoints)
        async with self._lock:
            if script == self._applied:
                return
            await run_nft(self.config, script)
            self._applied = script

    async def stop(self) -> None:
        """Remove our table."""
        async with self._lock:
            await run_nft(self.config, render_delete(self.config))
            self._applied = None
