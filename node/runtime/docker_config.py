"""Pure translations for the Docker driver: RunSpec -> container-create arguments, and a
container's inspect data -> TaskObservation / TaskStats. No daemon is needed to test them.

`container_kwargs` is a sum of small contributors, one per concern; a new RunSpec concern
(volumes, secrets) is one more contributor.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from node.runtime.health import HealthCheck, HealthStatus
from node.runtime.model import (
    LABEL_SERVICE,
    LABEL_SLOT,
    LABEL_TASK,
    PublishedPort,
    RunSpec,
    RuntimeState,
    TaskObservation,
    TaskStats,
)
from node.runtime.mounts import docker_mount

_NANOS = 1_000_000_000


def container_name(spec: RunSpec) -> str:
    # As Swarm names them (service.slot.task), prefixed so they stand apart in `docker ps`.
    return f"shoal-{spec.service}.{spec.slot}.{spec.task_id}"


def _identity(spec: RunSpec, node_id: str) -> dict[str, Any]:
    return {
        "image": spec.image,
        "name": container_name(spec),
        "labels": spec.owner_labels(node_id),
        "environment": dict(spec.env),
    }


def _process(spec: RunSpec, node_id: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        # An init as PID 1 forwards SIGTERM and reaps zombies: stop does not wait out the grace.
        "init": True,
        # Shoal decides restarts; Docker restarting behind its back would hide failures.
        "restart_policy": {"Name": "no"},
    }
    if spec.command:
        kwargs["entrypoint"] = list(spec.command)
    if spec.args:
        kwargs["command"] = list(spec.args)
    return kwargs


def _limits(spec: RunSpec, node_id: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if spec.cpu_millis:
        kwargs["nano_cpus"] = spec.cpu_millis * 1_000_000
    if spec.memory_bytes:
        kwargs["mem_limit"] = spec.memory_bytes
        # Swap as large as memory would double the limit in effect; the limit is the limit.
        kwargs["memswap_limit"] = spec.memory_bytes
    return kwargs


def _network(spec: RunSpec, node_id: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if spec.ports:
        # None: an ephemeral host port, read back after start.
        kwargs["ports"] = {
            f"{p.target}/{p.protocol}": (spec.advertise_address, p.published or None)
            for p in spec.ports
        }
    if spec.networks:
        kwargs["network"] = spec.networks[0]
    if spec.dns_servers:
        kwargs["dns"] = list(spec.dns_servers)
    if spec.dns_search:
        kwargs["dns_search"] = list(spec.dns_search)
    return kwargs


def docker_healthcheck(check: HealthCheck) -> dict[str, Any]:
    """A cmd check as Docker runs it inside the container."""
    return {
        "test": ["CMD", *check.command],
        "interval": int(check.interval * _NANOS),
        "timeout": int(check.timeout * _NANOS),
        "retries": check.retries,
        "start_period": int(check.start_period * _NANOS),
    }


def _health(spec: RunSpec, node_id: str) -> dict[str, Any]:
    # Without a cmd check the image's own HEALTHCHECK (if any) stays in force.
    if spec.healthcheck is not None and spec.healthcheck.kind == "cmd":
        return {"healthcheck": docker_healthcheck(spec.healthcheck)}
    return {}


def _mounts(spec: RunSpec, node_id: str) -> dict[str, Any]:
    return {"mounts": [docker_mount(m) for m in spec.mounts]} if spec.mounts else {}


def _options(spec: RunSpec, node_id: str) -> dict[str, Any]:
    """The service's container options (Compose's user, working_dir, ulimits, ...)."""
    o = spec.options
    kwargs: dict[str, Any] = {
        key: getattr(o, key)
        for key in ("user", "working_dir", "hostname", "stop_signal", "tty", "read_only")
        if getattr(o, key)
    }
    if o.sysctls:
        kwargs["sysctls"] = dict(o.sysctls)
    if o.extra_hosts:
        kwargs["extra_hosts"] = dict(o.extra_hosts)
    if o.ulimits:
        kwargs["ulimits"] = [
            {"name": name, "soft": u.soft, "hard": u.hard} for name, u in o.ulimits.items()
        ]
    if o.log_driver or o.log_options:
        kwargs["log_config"] = {"type": o.log_driver, "config": dict(o.log_options)}
    return kwargs


_CONTRIBUTORS: tuple[Callable[[RunSpec, str], dict[str, Any]], ...] = (
    _identity,
    _process,
    _limits,
    _network,
    _health,
    _mounts,
    _options,
)


def container_kwargs(spec: RunSpec, node_id: str) -> dict[str, Any]:
    """Keyword arguments for `DockerClient.containers.create`."""
    kwargs: dict[str, Any] = {}
    for contribute in _CONTRIBUTORS:
        kwargs.update(contribute(spec, node_id))
    return kwargs


def parse_docker_time(text: str) -> float | None:
    """Docker's RFC 3339 times with nanoseconds -> epoch seconds; its zero time -> None."""
    if not text or text.startswith("0001-01-01"):
        return None
    main, _, rest = text.partition(".")
    if rest:
        # Python reads at most microseconds: keep 6 of Docker's 9 fraction digits.
        digits = len(rest) - len(rest.lstrip("0123456789"))
        main = f"{main}.{rest[:digits][:6]:0<6}{rest[digits:]}"
    return datetime.fromisoformat(main.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def _endpoints(attrs: dict[str, Any]) -> tuple[PublishedPort, ...]:
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    found = []
    for key, bindings in ports.items():
        target, _, protocol = key.partition("/")
        for binding in bindings or ():
            found.append(
                PublishedPort(
                    int(target),
                    protocol or "tcp",  # type: ignore[arg-type]
                    binding.get("HostIp") or "0.0.0.0",
                    int(binding["HostPort"]),
                )
            )
    return tuple(sorted(found, key=lambda e: (e.target, e.protocol, e.host)))


# Docker's own networks: a task's address there is not one other nodes can reach.
_DEFAULT_NETWORKS = frozenset({"bridge", "host", "none"})


def _networks(attrs: dict[str, Any]) -> dict[str, str]:
    found = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return {
        name: settings["IPAddress"]
        for name, settings in sorted(found.items())
        if name not in _DEFAULT_NETWORKS and (settings or {}).get("IPAddress")
    }


def _state(status: str, exit_code: int, oom: bool, error: str) -> RuntimeState:
    if status == "created":
        # A container that failed to start stays "created" with the reason in State.Error.
        return "failed" if error else "starting"
    if status in ("running", "paused", "restarting"):
        return "running"
    return "exited" if exit_code == 0 and not oom and not error else "failed"


def _health_status(raw: str | None) -> HealthStatus:
    return raw if raw in ("starting", "healthy", "unhealthy") else "unknown"  # type: ignore[return-value]


def observation_from_attrs(attrs: dict[str, Any]) -> TaskObservation:
    """A container's inspect data (`Container.attrs`) as an observation."""
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    state = attrs.get("State") or {}
    status = state.get("Status", "")
    exit_code = int(state.get("ExitCode", 0))
    oom = bool(state.get("OOMKilled"))
    error = state.get("Error") or ""
    if oom:
        limit = (attrs.get("HostConfig") or {}).get("Memory") or 0
        error = f"killed: out of memory (limit {limit} bytes)"
    task_state = _state(status, exit_code, oom, error)
    if task_state == "failed" and not error:
        error = f"exited with status {exit_code}"
    return TaskObservation(
        task_id=labels.get(LABEL_TASK, ""),
        state=task_state,
        service=labels.get(LABEL_SERVICE, ""),
        slot=int(labels.get(LABEL_SLOT, "0") or 0),
        exit_code=exit_code if task_state in ("exited", "failed") else None,
        error=error,
        endpoints=_endpoints(attrs),
        started_at=parse_docker_time(state.get("StartedAt", "")),
        health=_health_status((state.get("Health") or {}).get("Status")),
        networks=_networks(attrs),
    )


def stats_from_docker(task_id: str, raw: dict[str, Any]) -> TaskStats:
    """One-shot `stats` data -> cpu percent (as `docker stats` computes it) and memory."""
    cpu, pre = raw.get("cpu_stats") or {}, raw.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        pre.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = (
        cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or ()) or 1
    )
    percent = cpu_delta / system_delta * cpus * 100.0 if system_delta > 0 and cpu_delta > 0 else 0.0
    memory = raw.get("memory_stats") or {}
    # The page cache is reclaimable: `docker stats` leaves it out, and so do we.
    cache = (memory.get("stats") or {}).get("cache", 0)
    return TaskStats(
        task_id, percent, max(0, memory.get("usage", 0) - cache), memory.get("limit", 0)
    )
