"""Which endpoints this node announces in the gossip table: pure, tested with tables.

Each node announces only its own tasks, one key per task (`ep/<task id>`), and only while
the task may get traffic: desired running, observed running, and healthy when its service
has a health check (running is enough without one). The replicated state says what the
scheduler wants; the agent's observations are newer than the state (they reach it only after
a batch is committed), so a task the agent just saw fail or turn unhealthy is withdrawn at
once instead of a report interval and a Raft round later.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from consensus.services import ServiceSpec
from consensus.store import StateVersion
from consensus.tasks import (
    TERMINAL,
    Endpoint,
    Health,
    PortBinding,
    Task,
    TaskReport,
    reported,
    services,
    spec_of,
    tasks_on,
)
from consensus.wire import to_plain

KEY_PREFIX = "ep/"


def endpoint_key(task_id: str) -> str:
    return KEY_PREFIX + task_id


def task_of_key(key: str) -> str | None:
    """The task id of an endpoint key; None for keys of other kinds."""
    if not key.startswith(KEY_PREFIX):
        return None
    return key[len(KEY_PREFIX) :] or None


@dataclass(frozen=True, slots=True)
class Announcement:
    """The gossip value of one task that may get traffic; its node is the entry's owner and
    its task id is in the key, so neither travels twice."""

    service: str
    address: str
    ports: tuple[PortBinding, ...] = ()
    weight: int = 1
    # Overlay network -> the task's address there (for VIPs and container DNS).
    networks: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Values arrive from other nodes: refuse what no endpoint could be made of."""
        if not self.service:
            raise ValueError("service: must not be empty")
        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            raise ValueError(f"address: must be an IP address, not {self.address!r}") from None
        if self.weight < 1:
            raise ValueError(f"weight: must be at least 1, not {self.weight}")
        for i, binding in enumerate(self.ports):
            for name in ("target", "host_port"):
                port = getattr(binding, name)
                if not 1 <= port <= 65535:
                    raise ValueError(f"ports[{i}].{name}: must be a port 1..65535, not {port}")
        for network, address in self.networks.items():
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(
                    f"networks.{network}: must be an IP address, not {address!r}"
                ) from None


@dataclass(frozen=True, slots=True)
class Observed:
    """The latest the agent saw of one task, folded as the state machine folds reports."""

    state: str
    health: Health | None = None
    endpoint: Endpoint | None = None


def fold(seen: Observed | None, report: TaskReport) -> Observed:
    """`seen` updated by a newer report. A report leaves health and endpoint as they were
    when it carries none; a task that ended stays ended."""
    if seen is None:
        return Observed(report.state, report.health, report.endpoint)
    if seen.state in TERMINAL:
        return seen
    return Observed(report.state, **reported(report, seen, ("health", "endpoint")))


def announcement(
    task: Task, spec: ServiceSpec | None, seen: Observed | None
) -> Announcement | None:
    """What to announce for one task of this node, or None while it must get no traffic."""
    if task.desired != "running" or task.terminal:
        return None
    state = seen.state if seen is not None else task.state
    health = (seen.health if seen is not None else None) or task.health
    endpoint = seen.endpoint if seen is not None and seen.endpoint is not None else task.endpoint
    if state != "running" or not endpoint.address or not (endpoint.ports or endpoint.networks):
        return None
    checked = spec is not None and spec.health.kind != "none"
    # Without a check of ours the runtime may still run the image's own (Docker HEALTHCHECK).
    if health == "unhealthy" or (checked and health != "healthy"):
        return None
    return Announcement(
        task.service, endpoint.address, endpoint.ports, networks=dict(endpoint.networks)
    )


def own_tasks(state: StateVersion, node_id: str) -> list[tuple[Task, ServiceSpec | None]]:
    """The tasks bound to `node_id` with the spec version each was made from."""
    by_name = services(state)
    found = []
    for task in tasks_on(state, node_id).values():
        found.append((task, spec_of(by_name, task)))
    return found


def wanted(
    own: Iterable[tuple[Task, ServiceSpec | None]], observed: Mapping[str, Observed]
) -> dict[str, Any]:
    """The gossip entries this node should hold: key -> plain value."""
    entries = {}
    for task, spec in own:
        found = announcement(task, spec, observed.get(task.id))
        if found is not None:
            entries[endpoint_key(task.id)] = to_plain(found)
    return entries


@dataclass(frozen=True, slots=True)
class Changes:
    set: dict[str, Any]
    delete: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.set or self.delete)


def changes(held: Mapping[str, Any], want: Mapping[str, Any]) -> Changes:
    """What turns the entries this node holds (key -> value, endpoint keys only) into the
    wanted ones: new or changed values to write, keys to tombstone."""
    return Changes(
        {k: v for k, v in want.items() if held.get(k) != v},
        tuple(sorted(k for k in held if k not in want)),
    )
