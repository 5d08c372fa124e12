"""Named volumes in the replicated state: which services use them and which nodes hold them.

A named volume is local to a node: its data stays where a task wrote it. The state never
records volumes as such; the task history does the remembering: the node where a slot's
newest placed task ran holds that slot's data (the scheduler keeps the slot there), and the
nodes where a service's tasks ran hold copies of its volumes (`shoal volume ls`). Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from consensus.model import Node
from consensus.services import ServiceSpec
from consensus.tasks import Service, Task

SlotKey = tuple[str, int]  # (service id, slot) of a replicated task


def named_volumes(spec: ServiceSpec) -> tuple[str, ...]:
    """The named volumes a spec mounts (anonymous volumes, binds and tmpfs are not named)."""
    return tuple(v.source for v in spec.volumes if v.type == "volume" and v.source)


def keeps_local_data(spec: ServiceSpec) -> bool:
    """Whether the spec's slots are tied to the node holding their volume data."""
    return spec.volume_affinity == "node" and bool(named_volumes(spec))


def slot_homes(
    tasks: Iterable[Task],
    service_ids: Collection[str],
    spec_of: Callable[[Task], ServiceSpec | None],
) -> dict[SlotKey, str]:
    """(service id, slot) -> the node of that slot's newest placed task that mounted a named
    volume, for the replicated slots of `service_ids`. One pass over `tasks`."""
    newest: dict[SlotKey, tuple[tuple[float, int], str]] = {}
    for task in tasks:
        if not task.slot or not task.node_id or task.service_id not in service_ids:
            continue
        key = (task.service_id, task.slot)
        age = (task.created_at, task.spec_version)
        seen = newest.get(key)
        if seen is not None and seen[0] >= age:
            continue
        spec = spec_of(task)
        if spec is not None and named_volumes(spec):
            newest[key] = (age, task.node_id)
    return {key: node_id for key, (_, node_id) in newest.items()}


@dataclass(frozen=True, slots=True)
class VolumeUse:
    """A named volume: the services that mount it and the nodes (by name) whose tasks did."""

    name: str
    services: tuple[str, ...]
    nodes: tuple[str, ...]


def volume_table(
    services: Mapping[str, Service], tasks: Iterable[Task], nodes: Mapping[str, Node]
) -> tuple[VolumeUse, ...]:
    """Every named volume in a service's current or earlier specs, sorted by name. A node
    counts as holding a volume when a task of a spec version that mounts it was placed there."""
    by_id = {service.id: service for service in services.values()}
    users: dict[str, set[str]] = {}
    holders: dict[str, set[str]] = {}
    for service in services.values():
        for spec in (service.spec, *(h.spec for h in service.history)):
            for name in named_volumes(spec):
                users.setdefault(name, set()).add(service.name)
    for task in tasks:
        owner = by_id.get(task.service_id)
        placed = owner.spec_at(task.spec_version) if owner is not None and task.node_id else None
        for name in named_volumes(placed) if placed is not None else ():
            node = nodes.get(task.node_id)
            holders.setdefault(name, set()).add(node.name if node is not None else task.node_id)
    return tuple(
        VolumeUse(name, tuple(sorted(users[name])), tuple(sorted(holders.get(name, ()))))
        for name in sorted(users)
    )
