"""Mesh ports given out as Docker Swarm gives them: a Compose port with a target only
(`ports: ["80"]`) is published on the routing mesh on a port from 30000-32767. Pure.

The number is chosen when the file is applied: the lowest free one, or the one the service
already has for that target (so applying the same file again changes nothing). The state
machine refuses a port another service publishes, so two applies racing for one number
cannot both win.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable

from consensus.services import ServiceSpec

MESH_PORTS = range(30000, 32768)

PortKey = tuple[int, str]  # (target, protocol)


def published_ingress(specs: Iterable[ServiceSpec]) -> set[tuple[int, str]]:
    """Every (published port, protocol) the given services hold on the mesh."""
    return {
        (p.published, p.protocol)
        for spec in specs
        for p in spec.ports
        if p.mode == "ingress" and p.published
    }


def assign_mesh_ports(
    spec: ServiceSpec,
    wanted: Collection[PortKey],
    existing: ServiceSpec | None,
    taken: set[tuple[int, str]],
) -> ServiceSpec:
    """`spec` with each of its `wanted` target-only ingress ports given a mesh port; `taken`
    (the other services' ports) grows by the ones chosen. ValueError when the range is full."""
    kept = {
        (p.target, p.protocol): p.published
        for p in (existing.ports if existing else ())
        if p.mode == "ingress" and p.published in MESH_PORTS
    }
    ports = []
    for port in spec.ports:
        key = (port.target, port.protocol)
        if port.published or port.mode != "ingress" or key not in wanted:
            ports.append(port)
            continue
        number = kept.get(key)
        if number is None or (number, port.protocol) in taken:
            number = next((n for n in MESH_PORTS if (n, port.protocol) not in taken), None)
            if number is None:
                raise ValueError(
                    f"ports: every mesh port {MESH_PORTS.start}-{MESH_PORTS.stop - 1}"
                    f"/{port.protocol} is taken"
                )
        taken.add((number, port.protocol))
        ports.append(dataclasses.replace(port, published=number))
    return dataclasses.replace(spec, ports=tuple(ports))
