"""Each overlay network as a Docker network on this node, made on the node's lease: the
engine plugs its tasks into the network's bridge and gives them addresses from the lease
only (an `internal` network is not Docker's internal kind, which would leave its tasks no
route to the VIPs: the overlay's ruleset keeps it from the outside). The bridge is named
after the network's VXLAN id, so the kernel shell can add the VXLAN device to it as one more
port.

Why a Docker network and not our own veth pairs: the engine then handles a container's
interface, address, routes, resolv.conf and its removal itself, adoption after a node
restart needs nothing, and its own rules already keep two bridges (two networks) apart.
The subnet Docker is told is the network's whole subnet, so every task of the network, on
any node, and every VIP of the network are on-link (a task on several networks reaches each
network's VIPs through that network's interface, whatever its default route); `ip_range` is
the lease, so this engine never gives out another node's addresses nor a VIP. Docker's
masquerade of outgoing traffic stays on: tasks reach the world through their node, and
traffic inside the network leaves through the bridge and is not translated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from docker.errors import APIError, NotFound
from docker.types import IPAMConfig, IPAMPool

from netoverlay.overlay.types import NodeOverlay, OverlayNetwork
from node.overlay.view import DOCKER_PREFIX, docker_network
from node.runtime.docker_sdk import docker  # first: it imports the SDK in its lean form

log = logging.getLogger(__name__)

# Tries at removing a network whose containers keep (re)joining as the node stops.
TEARDOWN_ATTEMPTS = 8
LABEL_OVERLAY = "shoal.overlay"
LABEL_NODE = "shoal.node"


def wanted_settings(network: OverlayNetwork, mtu: int) -> dict[str, Any]:
    """How the Docker network of `network` must be made (pure; compared with what exists)."""
    return {
        "subnet": network.subnet,
        "ip_range": network.lease,
        "gateway": network.gateway,
        "bridge": network.bridge,
        "mtu": str(network.mtu(mtu)),
    }


def existing_settings(attrs: dict[str, Any]) -> dict[str, Any]:
    pools = (attrs.get("IPAM") or {}).get("Config") or [{}]
    pool = pools[0] if pools else {}
    options = attrs.get("Options") or {}
    return {
        "subnet": pool.get("Subnet"),
        "ip_range": pool.get("IPRange"),
        "gateway": pool.get("Gateway"),
        "bridge": options.get("com.docker.network.bridge.name"),
        "mtu": options.get("com.docker.network.driver.mtu"),
    }


class DockerNetworks:
    """Makes the engine's `shoal-*` networks of this node match its overlay."""

    def __init__(self, client: docker.DockerClient, node_id: str) -> None:
        self._client = client
        self._node_id = node_id

    def _ours(self) -> dict[str, Any]:
        found = self._client.networks.list(
            filters={"label": [f"{LABEL_OVERLAY}=1", f"{LABEL_NODE}={self._node_id}"]}
        )
        return {n.name: n for n in found}

    def _create(self, network: OverlayNetwork, mtu: int) -> None:
        settings = wanted_settings(network, mtu)
        self._client.networks.create(
            docker_network(network.name),
            driver="bridge",
            ipam=IPAMConfig(
                pool_configs=[
                    IPAMPool(
                        subnet=settings["subnet"],
                        iprange=settings["ip_range"],
                        gateway=settings["gateway"],
                    )
                ]
            ),
            options={
                "com.docker.network.bridge.name": settings["bridge"],
                "com.docker.network.driver.mtu": settings["mtu"],
            },
            labels={LABEL_OVERLAY: "1", LABEL_NODE: self._node_id, "shoal.network": network.name},
            check_duplicate=True,
        )
        log.info(
            "overlay: made network %s (%s, lease %s) on bridge %s",
            network.name,
            network.subnet,
            network.lease,
            network.bridge,
        )

    def converge(self, overlay: NodeOverlay, mtu: int) -> tuple[set[str], list[str]]:
        """Blocking (run it in a thread). Returns the networks of ours the engine now has,
        and what could not be done, one line each: a network in use by containers cannot be
        remade or removed until they are gone."""
        problems = []
        ours = self._ours()
        wanted = {docker_network(n.name): n for n in overlay.networks if n.lease}
        for name, existing in sorted(ours.items()):
            network = wanted.get(name)
            if network is not None and existing_settings(existing.attrs) == wanted_settings(
                network, mtu
            ):
                continue
            try:
                existing.remove()
                log.info("overlay: removed network %s", name)
            except (APIError, NotFound) as exc:
                problems.append(f"cannot remove network {name}: {exc}")
        ours = self._ours()
        for name, network in sorted(wanted.items()):
            if name not in ours:
                try:
                    self._create(network, mtu)
                except APIError as exc:
                    problems.append(f"cannot make network {name}: {exc}")
        return set(self._ours()), problems

    def remove_all(self) -> list[str]:
        """Blocking. Remove every network of ours, taking the containers still on one off it
        first (this node left the cluster: their tasks run elsewhere now). Returns what could
        not be done, one line each."""
        problems = []
        for name, network in sorted(self._ours().items()):
            # A container the agent was starting as the node stopped (its engine call runs
            # on in a thread) can join between the disconnects and the removal: try again.
            for attempt in range(TEARDOWN_ATTEMPTS):
                try:
                    network.reload()
                except NotFound:
                    break  # gone already
                try:
                    for container in network.attrs.get("Containers") or {}:
                        self._client.api.disconnect_container_from_network(
                            container, network.id, force=True
                        )
                    network.remove()
                    log.info("overlay: removed network %s", name)
                    break
                except APIError as exc:
                    if attempt == TEARDOWN_ATTEMPTS - 1:
                        problems.append(f"cannot remove network {name}: {exc}")
                    else:
                        time.sleep(0.5)
        return problems

    def attachments(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """Blocking. (overlay network, address) -> every overlay network the container
        holding that address is on, for each of this engine's containers on our networks."""
        by_container: dict[str, dict[str, str]] = {}
        for network in self._client.networks.list(
            filters={"label": [f"{LABEL_OVERLAY}=1", f"{LABEL_NODE}={self._node_id}"]}, greedy=True
        ):
            name = (
                network.attrs.get("Labels", {}).get("shoal.network")
                or network.name[len(DOCKER_PREFIX) :]
            )
            for container, seat in (network.attrs.get("Containers") or {}).items():
                address = (seat.get("IPv4Address") or "").partition("/")[0]
                if address:
                    by_container.setdefault(container, {})[name] = address
        return {
            (network, address): tuple(sorted(seats))
            for seats in by_container.values()
            for network, address in seats.items()
        }

    async def aconverge(self, overlay: NodeOverlay, mtu: int) -> tuple[set[str], list[str]]:
        return await asyncio.to_thread(self.converge, overlay, mtu)
