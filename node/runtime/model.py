"""The values that cross the runtime-driver seam: what to run, and what is seen running.

`RunSpec` is the drivers' whole input; the agent translates the scheduler's task and its
service spec into one. Volumes and secrets arrive as new `RunSpec` fields, each with one
more contributor in every driver's translation (`docker_config.container_kwargs`, the process
driver's environment), so adding them touches no existing field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from consensus.container import ContainerOptions
from consensus.model import Resources
from node.runtime.health import HealthCheck, HealthStatus
from node.runtime.mounts import Mount

Protocol = Literal["tcp", "udp"]
# starting: created, not yet running. exited: ended with status 0. failed: ended with another
# status, was killed by the runtime (out of memory) or could not be started at all (`error`
# says which). missing: the driver has nothing for this task id.
RuntimeState = Literal["starting", "running", "exited", "failed", "missing"]

# Labels that mark everything a driver runs for Shoal; a restarted agent re-adopts by them.
LABEL_MANAGED = "shoal.managed"
LABEL_NODE = "shoal.node"
LABEL_TASK = "shoal.task"
LABEL_SERVICE = "shoal.service"
LABEL_SLOT = "shoal.slot"

# Task ids name directories, cgroups and containers: keep them to a portable alphabet.
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True, slots=True)
class PortToPublish:
    """What the driver is asked to publish (translated from a spec's consensus.services.PortSpec):
    a port the task listens on, published on host port `published` of the advertise
    address, or on an ephemeral one (chosen by the driver) when `published` is 0."""

    target: int
    protocol: Protocol = "tcp"
    published: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.target <= 65535:
            raise ValueError(f"target: must be a port from 1 to 65535, not {self.target}")
        if self.protocol not in ("tcp", "udp"):
            raise ValueError(f"protocol: must be 'tcp' or 'udp', not {self.protocol!r}")
        if not 0 <= self.published <= 65535:
            raise ValueError(f"published: must be 0 (any) or a port to 65535, not {self.published}")


@dataclass(frozen=True, slots=True)
class TaskFile:
    """A secret or config that the driver puts, read-only, at `target` (an absolute path in
    the task) before the task starts. The agent fills in `data` just before the start: it
    lives in memory and on a tmpfs only, and is never logged."""

    kind: Literal["secret", "config"]
    source: str
    target: str
    mode: int = 0o444
    data: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        parts = self.target.split("/")
        if not self.target.startswith("/") or "" in parts[1:] or {".", ".."} & set(parts):
            raise ValueError(
                f"files: target {self.target!r} of {self.kind} {self.source!r} "
                "must be an absolute file path without '.' or '..'"
            )


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One task to run.

    `command` replaces the image's entrypoint and `args` its default command, each only when
    not empty (as Kubernetes' command/args). The process runtime runs `command + args` and
    needs `image` empty or "process". Limits of 0 mean unlimited; cpu is in millicores.
    Ports are published on `advertise_address` so that other hosts reach them.
    """

    task_id: str
    service: str
    slot: int
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    ports: tuple[PortToPublish, ...] = ()
    cpu_millis: int = 0
    memory_bytes: int = 0
    healthcheck: HealthCheck | None = None
    labels: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    stop_grace: float = 10.0
    advertise_address: str = "127.0.0.1"
    dns_servers: tuple[str, ...] = ()
    # Domains a short name is tried in (`web` -> `web.shoal`), with `dns_servers`.
    dns_search: tuple[str, ...] = ()
    files: tuple[TaskFile, ...] = ()
    options: ContainerOptions = field(default_factory=ContainerOptions)  # Docker honours them
    # The runtime's networks the task joins (the first when it is made, the others before it
    # starts); empty: the runtime's default network.
    networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _TASK_ID.fullmatch(self.task_id):
            raise ValueError(
                f"task_id: must be 1-128 letters, digits, '_', '.' or '-' "
                f"starting with a letter or digit, not {self.task_id!r}"
            )
        if not self.service:
            raise ValueError("service: must not be empty")
        if self.slot < 0:
            raise ValueError(f"slot: must not be negative, not {self.slot}")
        for name in ("cpu_millis", "memory_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: a limit must not be negative (0 is unlimited)")
        if self.stop_grace < 0:
            raise ValueError("stop_grace: must not be negative")
        targets = [(p.target, p.protocol) for p in self.ports]
        if len(set(targets)) != len(targets):
            raise ValueError("ports: the same target port and protocol appear twice")
        reserved = sorted(k for k in self.labels if k.startswith("shoal."))
        if reserved:
            raise ValueError(f"labels.{reserved[0]}: the 'shoal.' prefix is reserved")

    def owner_labels(self, node_id: str) -> dict[str, str]:
        """The user's labels plus Shoal's ownership labels."""
        return {
            **self.labels,
            LABEL_MANAGED: "1",
            LABEL_NODE: node_id,
            LABEL_TASK: self.task_id,
            LABEL_SERVICE: self.service,
            LABEL_SLOT: str(self.slot),
        }


@dataclass(frozen=True, slots=True)
class PublishedPort:
    """Where the driver made a task's target port reachable from other hosts (the agent
    reports it as a consensus.tasks.PortBinding)."""

    target: int
    protocol: Protocol
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class TaskObservation:
    task_id: str
    state: RuntimeState
    service: str = ""
    slot: int = 0
    exit_code: int | None = None
    error: str = ""
    endpoints: tuple[PublishedPort, ...] = ()
    # Wall-clock seconds since the epoch; None when the task never started.
    started_at: float | None = None
    # What the runtime itself knows (Docker HEALTHCHECK); "unknown" when it runs no check.
    health: HealthStatus = "unknown"
    # The runtime's network name -> the task's address on it (its default network left out).
    networks: dict[str, str] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.state in ("starting", "running")

    def endpoint(self, target: int, protocol: Protocol = "tcp") -> PublishedPort | None:
        """The published endpoint of a target port; target 0 means the first one."""
        for ep in self.endpoints:
            if (target == 0 or ep.target == target) and ep.protocol == protocol:
                return ep
        return None


def missing(task_id: str) -> TaskObservation:
    return TaskObservation(task_id, "missing", error="no such task on this node")


@dataclass(frozen=True, slots=True)
class TaskStats:
    task_id: str
    # Percent of one CPU (200.0 = two CPUs busy), as `docker stats` shows it.
    cpu_percent: float
    memory_bytes: int
    memory_limit_bytes: int = 0


@dataclass(frozen=True, slots=True)
class NodeFingerprint:
    cpu_millis: int
    memory_bytes: int
    runtime: str
    details: dict[str, str] = field(default_factory=dict)

    @property
    def resources(self) -> Resources:
        return Resources(self.cpu_millis, self.memory_bytes)
