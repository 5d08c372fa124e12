"""What applying a manifest does to the services in the cluster, decided without writing:
the API runs the plan (or, for a dry run, shows it).

Only changed specs are written, so applying the same file twice changes nothing the second
time. Services applied from one file are a stack (label `com.docker.stack.namespace`): a
service of another stack is never taken over, and `prune` removes the stack's services that
the file no longer holds. A Kubernetes Service without its workload in the file publishes
its ports on the services in the cluster whose labels hold its selector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from consensus.services import ServiceSpec, SpecError, parse_service_spec
from consensus.tasks import Service
from consensus.wire import to_plain
from node.manifests import STACK_LABEL, Attachment, Manifest
from node.manifests.kube import merge_ports

ApplyAction = Literal["create", "update", "unchanged", "remove"]


@dataclass(frozen=True, slots=True)
class ApplyStep:
    spec: ServiceSpec
    action: ApplyAction
    expected_version: int = 0  # the version the update or removal was planned against
    changes: tuple[str, ...] = ()  # the spec's top-level fields an update changes


@dataclass(frozen=True, slots=True)
class ApplyPlan:
    steps: tuple[ApplyStep, ...]
    warnings: tuple[str, ...]


class PlanConflict(Exception):
    """The file would take over a service of another stack."""

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


def _attached(service: ServiceSpec, attachment: Attachment) -> ServiceSpec:
    ports = merge_ports([to_plain(p) for p in service.ports], list(attachment.ports))
    try:
        return parse_service_spec({**to_plain(service), "ports": ports})
    except SpecError as exc:
        raise PlanConflict(f"{attachment.where}.spec.ports",
                           f"cannot publish on service {service.name!r}: {exc.field}: {exc.reason}") from None


def runtime_warnings(specs: tuple[ServiceSpec, ...], process_nodes: list[str]) -> list[str]:
    """One warning per container option that some service sets and process-runtime nodes
    ignore."""
    if not process_nodes:
        return []
    users: dict[str, list[str]] = {}
    for spec in specs:
        for option in spec.container.used():
            users.setdefault(option, []).append(spec.name)
    nodes = ", ".join(sorted(process_nodes)[:5]) + (" ..." if len(process_nodes) > 5 else "")
    return [f"container.{option} ({', '.join(names[:5])}{' ...' if len(names) > 5 else ''}): honoured "
            f"by the Docker runtime only; ignored on process-runtime nodes ({nodes})"
            for option, names in users.items()]


def plan_manifest(current: dict[str, Service], manifest: Manifest, *, prune: bool = False,
                  process_nodes: tuple[str, ...] = ()) -> ApplyPlan:
    """The whole plan for a manifest: its specs, its attachments, and with `prune` the
    removal of its stack's services that it no longer holds. `process_nodes` names the
    nodes that run the process runtime."""
    warnings = list(manifest.warnings) + runtime_warnings(manifest.specs, list(process_nodes))
    for spec in manifest.specs:
        theirs = current[spec.name].spec.labels.get(STACK_LABEL, "") if spec.name in current else ""
        ours = spec.labels.get(STACK_LABEL, "")
        if theirs and theirs != ours:
            raise PlanConflict(spec.name, f"service {spec.name!r} belongs to stack {theirs!r}: remove it "
                               f"(shoal stack rm {theirs}) or rename it in this file")
    wanted = {spec.name: spec for spec in manifest.specs}
    for attachment in manifest.attachments:
        targets = [s for s in current.values() if s.name not in wanted and
                   all(s.spec.labels.get(k) == v for k, v in attachment.selector.items())]
        if not targets:
            warnings.append(f"{attachment.where}: selects no service in the cluster yet; apply it "
                            "again once its workload runs")
        for service in targets:
            wanted[service.name] = _attached(service.spec, attachment)
    steps = plan_apply(current, tuple(wanted.values()))
    if prune:
        if not manifest.stack:
            raise PlanConflict("stack", "prune needs the stack the file is (--stack NAME, or a "
                               "Compose file's name:)")
        steps += [ApplyStep(s.spec, "remove", s.version) for s in current.values()
                  if s.spec.labels.get(STACK_LABEL) == manifest.stack and s.name not in wanted]
    return ApplyPlan(tuple(steps), tuple(warnings))

