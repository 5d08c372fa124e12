"""What applying a manifest does to the cluster, decided without writing: the API runs the
plan (or, for a dry run, shows it).

Only changed specs are written, so applying the same file twice changes nothing the second
time. Services applied from one file are a stack (label `com.docker.stack.namespace`): a
service (or cron job) of another stack is never taken over, and `prune` removes the stack's
services (and port selectors and cron jobs) that the file no longer holds. A Kubernetes Service without its workload in
the file is kept as a port selector: its ports go to the services whose labels hold its
selector, those in the cluster now and those applied later, with its name on the
Kubernetes workloads' network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from consensus.crons import Cron, CronSpec
from consensus.selectors import PortSelector
from consensus.services import PortSpec, ServiceSpec, SpecError, parse_service_spec
from consensus.tasks import Service
from consensus.wire import WireError, from_plain, to_plain
from node.manifests import STACK_LABEL, Attachment, Manifest
from node.manifests.kube import NETWORK, add_alias, merge_ports

ApplyAction = Literal["create", "update", "unchanged", "remove"]
# The container options the process runtime honours too.
PROCESS_OPTIONS = {"stop_signal"}


@dataclass(frozen=True, slots=True)
class ApplyStep:
    spec: ServiceSpec
    action: ApplyAction
    expected_version: int = 0  # the version the update or removal was planned against
    changes: tuple[str, ...] = ()  # the spec's top-level fields an update changes


@dataclass(frozen=True, slots=True)
class CronStep:
    spec: CronSpec
    action: ApplyAction


@dataclass(frozen=True, slots=True)
class ApplyPlan:
    steps: tuple[ApplyStep, ...]
    warnings: tuple[str, ...]
    keep_selectors: tuple[PortSelector, ...] = ()  # written before the steps
    drop_selectors: tuple[str, ...] = ()  # removed after them
    crons: tuple[CronStep, ...] = ()  # applied after the services


class PlanConflict(Exception):
    """The file cannot be applied as it stands (it would take over another stack's service)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def changed_fields(old: ServiceSpec, new: ServiceSpec) -> tuple[str, ...]:
    before, after = to_plain(old), to_plain(new)
    return tuple(key for key in after if before.get(key) != after[key])


def _step(current: dict[str, Service], spec: ServiceSpec) -> ApplyStep:
    service = current.get(spec.name)
    if service is None:
        return ApplyStep(spec, "create")
    if service.spec == spec:
        return ApplyStep(spec, "unchanged", service.version)
    return ApplyStep(spec, "update", service.version, changed_fields(service.spec, spec))


def plan_apply(current: dict[str, Service], specs: tuple[ServiceSpec, ...]) -> list[ApplyStep]:
    """Create, update or leave each spec's service."""
    return [_step(current, spec) for spec in specs]


def runtime_warnings(specs: tuple[ServiceSpec, ...], process_nodes: list[str]) -> list[str]:
    """One warning per container option that some service sets and process-runtime nodes
    ignore."""
    if not process_nodes:
        return []
    users: dict[str, list[str]] = {}
    for spec in specs:
        for option in spec.container.used():
            if option not in PROCESS_OPTIONS:
                users.setdefault(option, []).append(spec.name)
    nodes = ", ".join(sorted(process_nodes)[:5]) + (" ..." if len(process_nodes) > 5 else "")
    return [
        f"container.{option} ({', '.join(names[:5])}{' ...' if len(names) > 5 else ''}): honoured "
        f"by the Docker runtime only; ignored on process-runtime nodes ({nodes})"
        for option, names in users.items()
    ]


def _selector(attachment: Attachment, stack: str) -> PortSelector:
    try:
        ports = tuple(from_plain(PortSpec, port) for port in attachment.ports)
    except WireError as exc:
        raise PlanConflict(f"{attachment.where}.spec.ports", exc.reason) from None
    return PortSelector(
        attachment.name,
        dict(attachment.selector),
        ports,
        stack,
        attachment.where,
        NETWORK.name,
        attachment.headless,
    )


def _with_ports(spec: ServiceSpec, selectors: list[PortSelector]) -> ServiceSpec:
    """`spec` with the ports of every selector that selects it, on the network of each with
    its name as an alias there (and no VIP when it is headless)."""
    chosen = [s for s in selectors if s.selects(spec.labels)]
    if not chosen:
        return spec
    plain = to_plain(spec)
    ports = [to_plain(p) for p in spec.ports]
    attachments = {a["name"]: a for a in plain.get("networks", [])}
    for selector in chosen:
        ports = merge_ports(ports, [to_plain(p) for p in selector.ports])
        if selector.network:
            joined = attachments.get(selector.network, {"name": selector.network, "aliases": []})
            attachments[selector.network] = add_alias(joined, selector.name, spec.name)
        if selector.headless:
            plain["endpoint_mode"] = "dnsrr"
    try:
        return parse_service_spec({**plain, "ports": ports, "networks": list(attachments.values())})
    except SpecError as exc:
        names = ", ".join(s.where or s.name for s in chosen)
        raise PlanConflict(
            f"{names}.spec", f"cannot publish on service {spec.name!r}: {exc.field}: {exc.reason}"
        ) from None


def plan_crons(
    current: dict[str, Cron], specs: tuple[CronSpec, ...], stack: str, prune: bool
) -> list[CronStep]:
    """Create, update or leave each cron job (never one of another stack), and with `prune`
    remove the stack's cron jobs the file no longer holds."""
    steps = []
    for spec in specs:
        cron = current.get(spec.name)
        theirs = cron.spec.template.labels.get(STACK_LABEL, "") if cron else ""
        if theirs and theirs != stack:
            raise PlanConflict(
                spec.name,
                f"cron job {spec.name!r} belongs to stack {theirs!r}: remove "
                f"it (shoal stack rm {theirs}) or rename it in this file",
            )
        steps.append(
            CronStep(
                spec, "create" if cron is None else "unchanged" if cron.spec == spec else "update"
            )
        )
    if prune:
        wanted = {spec.name for spec in specs}
        steps += [
            CronStep(c.spec, "remove")
            for c in current.values()
            if c.spec.template.labels.get(STACK_LABEL) == stack and c.name not in wanted
        ]
    return steps


def plan_manifest(
    current: dict[str, Service],
    manifest: Manifest,
    *,
    prune: bool = False,
    process_nodes: tuple[str, ...] = (),
    selectors: dict[str, PortSelector] | None = None,
    crons: dict[str, Cron] | None = None,
) -> ApplyPlan:
    """The whole plan for a manifest: its specs with the ports their port selectors give,
    the services in the cluster its new selectors pick up, its cron jobs, and with `prune`
    the removal of its stack's services, selectors and cron jobs that it no longer holds.
    `process_nodes` names the nodes that run the process runtime; `selectors` are the port
    selectors and `crons` the cron jobs in the cluster."""
    held = dict(selectors or {})
    stack = manifest.stack
    warnings = list(manifest.warnings) + runtime_warnings(manifest.specs, list(process_nodes))
    for spec in manifest.specs:
        theirs = current[spec.name].spec.labels.get(STACK_LABEL, "") if spec.name in current else ""
        if theirs and theirs != spec.labels.get(STACK_LABEL, ""):
            raise PlanConflict(
                spec.name,
                f"service {spec.name!r} belongs to stack {theirs!r}: remove it "
                f"(shoal stack rm {theirs}) or rename it in this file",
            )
    keep = [_selector(a, stack) for a in manifest.attachments]
    for selector in keep:
        if selector.name in held and held[selector.name].stack != stack:
            raise PlanConflict(
                f"{selector.where}.metadata.name",
                f"Service {selector.name!r} belongs to stack {held[selector.name].stack!r}",
            )
    live = {**held, **{s.name: s for s in keep}}
    wanted = {spec.name: _with_ports(spec, list(live.values())) for spec in manifest.specs}
    for selector in keep:
        targets = [
            s for s in current.values() if s.name not in wanted and selector.selects(s.spec.labels)
        ]
        if not targets:
            warnings.append(
                f"{selector.where}: selects no service in the cluster yet; its ports go "
                "to the services it selects when they are applied"
            )
        for service in targets:
            wanted[service.name] = _with_ports(service.spec, [selector])
    steps = plan_apply(current, tuple(wanted.values()))
    drop: list[str] = []
    if prune:
        if not stack:
            raise PlanConflict(
                "stack",
                "prune needs the stack the file is (--stack NAME, or a Compose file's name:)",
            )
        steps += [
            ApplyStep(s.spec, "remove", s.version)
            for s in current.values()
            if s.spec.labels.get(STACK_LABEL) == stack and s.name not in wanted
        ]
        kept = {s.name for s in keep}
        drop = [name for name, s in held.items() if s.stack == stack and name not in kept]
    changed = [s for s in keep if held.get(s.name) != s]
    cron_steps = plan_crons(crons or {}, manifest.crons, stack, prune)
    return ApplyPlan(tuple(steps), tuple(warnings), tuple(changed), tuple(drop), tuple(cron_steps))
