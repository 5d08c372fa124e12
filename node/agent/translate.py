"""Pure translations between the replicated task model and the runtime-driver seam.

`run_spec` turns a scheduled task and the spec version it was created from into what a driver
runs; `observed` turns what a driver sees into the report the agent sends to the cluster.
No clock, no I/O: both are tested with tables.
"""

from __future__ import annotations

from collections.abc import Mapping

from consensus import services as svc
from consensus.tasks import Endpoint, Health, PortBinding, Task, TaskReport
from netoverlay.dns import ZONE
from node.overlay.view import Seat, overlay_addresses
from node.runtime.health import HealthCheck, HealthStatus
from node.runtime.model import PortToPublish, RunSpec, TaskFile, TaskObservation
from node.runtime.mounts import Mount

# Why a task the agent started is no longer known to its runtime.
VANISHED = "its container or process disappeared: removed outside Shoal"


class TranslateError(ValueError):
    """A task that cannot be run on this node as specified; the text names the field."""


def run_ports(ports: tuple[svc.PortSpec, ...], overlay: bool = False) -> tuple[PortToPublish, ...]:
    """Ingress ports are served by every node's load balancer on the published port, so the
    task itself gets an ephemeral host port; host-mode ports bind their published port on
    this node. A target declared twice runs once, on the fixed port if either has one.
    A task on an overlay network binds no host port for its ingress ports: the routing mesh
    reaches it at its address on the network (as Swarm's ingress does), and a port it does
    not publish is reachable on the network only, never from outside the cluster."""
    chosen: dict[tuple[int, str], PortToPublish] = {}
    for port in ports:
        if overlay and port.mode == "ingress":
            continue
        fixed = port.published if port.mode == "host" else 0
        key = (port.target, port.protocol)
        if key not in chosen or (fixed and not chosen[key].published):
            chosen[key] = PortToPublish(port.target, port.protocol, fixed)
    return tuple(chosen.values())


def health_check(
    check: svc.HealthCheck, ports: tuple[svc.PortSpec, ...] = ()
) -> HealthCheck | None:
    """The check to run; its port 0 (the first port) made the first port's target, which a
    probe finds among the task's endpoints, or at its overlay address when unpublished."""
    if check.kind == "none":
        return None
    port = check.port or (ports[0].target if ports and check.kind in ("http", "tcp") else 0)
    return HealthCheck(
        kind=check.kind,
        port=port,
        path=check.path,
        command=check.command,
        interval=check.interval,
        timeout=check.timeout,
        retries=check.retries,
        start_period=check.start_period,
    )


def task_env(task: Task, spec: svc.ServiceSpec) -> dict[str, str]:
    """The spec's env plus who the task is (as Swarm's templates and Nomad's NOMAD_* give):
    logs, metrics and peers can tell replicas apart. The spec's own values win."""
    return {
        "SHOAL_SERVICE": task.service,
        "SHOAL_TASK_ID": task.id,
        "SHOAL_TASK_SLOT": str(task.slot),
        "SHOAL_NODE_ID": task.node_id or "",
        **spec.env,
    }


def task_files(spec: svc.ServiceSpec) -> tuple[TaskFile, ...]:
    """The secrets and configs the task gets, at their paths; the agent fetches their content
    just before the start."""
    return tuple(
        TaskFile(kind, ref.source, ref.path(default_dir), ref.mode)
        for kind, refs, default_dir in (
            ("secret", spec.secrets, svc.SECRETS_DIR),
            ("config", spec.configs, svc.CONFIGS_DIR),
        )
        for ref in refs
    )


def run_mounts(volumes: tuple[svc.VolumeRef, ...]) -> tuple[Mount, ...]:
    return tuple(Mount(v.target, v.source, v.type, v.read_only) for v in volumes)


def run_networks(spec: svc.ServiceSpec, seats: Mapping[str, Seat] | None) -> tuple[str, ...]:
    """The runtime networks of the overlay networks a spec joins, in its order. A node
    without the overlay (`seats` None) runs the task on the runtime's default network, as
    before networks existed: a Compose file with networks still runs on a laptop."""
    if seats is None:
        return ()
    joined = []
    for i, attachment in enumerate(spec.networks):
        seat = seats.get(attachment.name)
        if seat is None:
            raise TranslateError(
                f"networks[{i}]: this node takes no part in overlay network "
                f"{attachment.name!r} (start it with --overlay; or the network "
                "has no address block left for it)"
            )
        joined.append(seat.runtime_network)
    return tuple(joined)


def run_spec(
    task: Task,
    spec: svc.ServiceSpec | None,
    advertise: str,
    dns_servers: tuple[str, ...] = (),
    seats: Mapping[str, Seat] | None = None,
) -> RunSpec:
    """What the driver runs for `task`; TranslateError when it cannot be run as specified.
    With `dns_servers` (the node's DNS, where tasks can reach it) short names resolve in
    the cluster's zone: `web` is `web.shoal`. A task on overlay networks (`seats`: this
    node's place in each; None on a node without the overlay) uses this node's resolver on
    its first network instead, which answers that network's services by name and forwards
    other names."""
    if spec is None:
        raise TranslateError(
            f"spec_version: version {task.spec_version} of service {task.service!r} is gone"
        )
    networks = run_networks(spec, seats)
    search: tuple[str, ...] = (ZONE,) if dns_servers else ()
    if networks and seats is not None:
        first = spec.networks[0].name
        dns_servers, search = (seats[first].gateway,), (first,)
    limits = spec.resources.limits
    try:
        return RunSpec(
            task_id=task.id,
            service=task.service,
            slot=task.slot,
            image=spec.image,
            command=spec.command,
            args=spec.args,
            env=task_env(task, spec),
            ports=run_ports(spec.ports, bool(networks)),
            cpu_millis=limits.cpu_millis,
            memory_bytes=limits.memory_bytes,
            healthcheck=health_check(spec.health, spec.ports),
            labels=dict(spec.labels),
            stop_grace=spec.stop_grace_period,
            mounts=run_mounts(spec.volumes),
            advertise_address=advertise,
            dns_servers=dns_servers,
            dns_search=search,
            files=task_files(spec),
            networks=networks,
            options=spec.container,
        )
    except ValueError as exc:
        raise TranslateError(str(exc)) from None


def task_health(status: HealthStatus) -> Health:
    """The runtime's word for "no check" is "unknown"; the task model's is "none"."""
    return "none" if status == "unknown" else status


def endpoint(seen: TaskObservation, advertise: str) -> Endpoint:
    # The advertise address, not the bind address the runtime reports (Docker may say
    # 0.0.0.0): other hosts need an address they can reach.
    return Endpoint(
        advertise,
        tuple(PortBinding(e.target, e.port, e.protocol) for e in seen.endpoints),
        overlay_addresses(seen.networks),
    )


def observed(seen: TaskObservation, advertise: str) -> TaskReport:
    """The report of what a driver sees of a task."""
    if seen.state in ("starting", "running"):
        health = task_health(seen.health)
        return TaskReport(
            seen.task_id,
            seen.state,
            endpoint=endpoint(seen, advertise),
            health=None if health == "none" else health,
        )
    if seen.state == "exited":
        return TaskReport(seen.task_id, "complete", exit_code=seen.exit_code or 0)
    if seen.state == "failed":
        return TaskReport(seen.task_id, "failed", error=seen.error, exit_code=seen.exit_code)
    return TaskReport(seen.task_id, "failed", error=VANISHED)
