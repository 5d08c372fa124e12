"""What the routing mesh and DNS serve, from (services, gossip entries, members): pure.

The replicated state says which ports services publish; the gossip table says where their
healthy tasks are; the live members say where every node's routing mesh listens. Entries
come from other nodes, so each is checked: a malformed one is left out with the reason (in
`problems`) and never stops the others from being served.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from consensus.services import ServiceSpec
from consensus.wire import WireError, from_plain
from netoverlay.dns import ServiceRecord, service_records
from netoverlay.gossip.model import Member, TableEntry
from netoverlay.lb.types import Backend, Protocol, ServicePort
from node.mesh.announce import Announcement, task_of_key

# The gossip meta key under which a node says where its routing mesh listens.
INGRESS_META = "ingress"


@dataclass(frozen=True, slots=True)
class MeshView:
    ports: tuple[ServicePort, ...]
    # By service name: one endpoint per task and TCP target port, sorted.
    endpoints: dict[str, list[Backend]]
    # Where the routing mesh listens, one address per live node: what NAME.shoal answers.
    ingress_addresses: tuple[str, ...]
    records: dict[str, ServiceRecord]
    # Gossip entries left out, each with the owner, the key and why.
    problems: tuple[str, ...] = ()


def service_ports(specs: Iterable[ServiceSpec]) -> list[ServicePort]:
    """The published ports of every service (ingress ones are routed by every node)."""
    return [
        ServicePort(
            spec.name,
            p.published,
            p.target,
            p.protocol,
            p.mode,
            proxy_protocol=p.proxy_version,
            idle_timeout=p.idle_timeout or None,
        )
        for spec in specs
        for p in spec.ports
        if p.published
    ]


# Service name -> (its first overlay network, the (target, protocol) of its ingress ports): the
# routing mesh reaches such a service's tasks at their address on that network, as Swarm's
# ingress does, and they bind no host port for those ports.
OverlayReach = Mapping[str, tuple[str, tuple[tuple[int, Protocol], ...]]]


def overlay_reach(
    specs: Iterable[ServiceSpec],
) -> dict[str, tuple[str, tuple[tuple[int, Protocol], ...]]]:
    return {
        spec.name: (
            spec.networks[0].name,
            tuple(
                sorted(
                    {
                        (p.target, p.protocol)
                        for p in spec.ports
                        if p.mode == "ingress" and p.published
                    }
                )
            ),
        )
        for spec in specs
        if spec.networks
    }


def entry_endpoints(entry: TableEntry, reach: OverlayReach = None) -> list[Backend]:
    """The endpoints one gossip entry announces; ValueError (WireError) names what is wrong.
    A task announced on its service's overlay network is reached there, on its target ports."""
    if reach is None:
        reach = {}
    task_id = task_of_key(entry.key)
    if task_id is None:
        raise ValueError(f"key: {entry.key!r} is not an endpoint key")
    found = from_plain(Announcement, entry.value, strict=False)
    network, targets = reach.get(found.service, ("", ()))
    if network in found.networks:
        return [
            Backend(
                found.service,
                task_id,
                entry.owner,
                found.networks[network],
                target,
                found.weight,
                target,
                protocol,
            )
            for target, protocol in targets
        ]
    return [
        Backend(
            found.service,
            task_id,
            entry.owner,
            found.address,
            binding.host_port,
            found.weight,
            binding.target,
            binding.protocol,
        )
        for binding in found.ports
    ]


def ingress_address(member: Member) -> str:
    """Where a member's routing mesh listens: its announced ingress address, else the host
    of its gossip address (a node that announced none listens on its advertise address)."""
    announced = member.meta.get(INGRESS_META)
    try:
        return str(ipaddress.ip_address(announced))
    except ValueError:
        return member.address[0]


def _address_order(address: str) -> tuple:
    ip = ipaddress.ip_address(address)
    return (ip.version, ip)


def build_view(
    specs: Collection[ServiceSpec], entries: Iterable[TableEntry], members: Iterable[Member]
) -> MeshView:
    live = [m for m in members if not m.gone]
    live_ids = {m.node_id for m in live}
    reach = overlay_reach(specs)
    endpoints: dict[str, list[Backend]] = {}
    problems = []
    for entry in entries:
        if entry.tombstone or entry.owner not in live_ids or task_of_key(entry.key) is None:
            continue
        try:
            found = entry_endpoints(entry, reach)
        except (WireError, ValueError) as exc:
            problems.append(f"{entry.owner}/{entry.key}: {exc}")
            continue
        for endpoint in found:
            endpoints.setdefault(endpoint.service, []).append(endpoint)
    for listed in endpoints.values():
        listed.sort(key=lambda e: e.key)
    ports = tuple(
        sorted(service_ports(specs), key=lambda p: (p.service, p.published_port, p.protocol))
    )
    addresses = tuple(sorted({ingress_address(m) for m in live}, key=_address_order))
    records = service_records(list(ports), endpoints, list(addresses))
    # A service with nothing healthy still exists: its name answers, with no addresses.
    for spec in specs:
        records.setdefault(spec.name.lower(), ServiceRecord((), ()))
    return MeshView(
        ports, dict(sorted(endpoints.items())), addresses, records, tuple(sorted(problems))
    )
