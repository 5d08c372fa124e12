"""Everything an apply would do, tried first on a copy of the state: a file that fails
anywhere changes nothing. The real commands run through the real state machine on the copy,
so the check and the commit can never disagree about what a valid spec is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from consensus.crons import CreateCron, UpdateCron
from consensus.networks import CreateNetwork, networks
from consensus.secrets import Blob, blobs
from consensus.state import ClusterState
from consensus.tasks import CreateService, UpdateService
from node.api.http_util import field_of

if TYPE_CHECKING:
    from node.manifests.networks import NetworkDef
    from node.manifests.plan import ApplyStep, CronStep
    from node.manifests.refs import FileSource


@dataclass(frozen=True, slots=True)
class ApplyProblem:
    where: str  # the service's name, or the file's field of a secret or config
    error: str
    code: int  # 400: the file is wrong; 409: it conflicts with the cluster's state
    field: str | None = None  # the file's field, when the error names one

    def __str__(self) -> str:
        return f"{self.field or self.where}: {self.error}"


def apply_problems(
    state: ClusterState,
    steps: list[ApplyStep],
    files: tuple[FileSource, ...],
    *,
    files_to_come: bool,
    networks_to_come: tuple[NetworkDef, ...] = (),
    cron_steps: tuple[CronStep, ...] = (),
) -> list[ApplyProblem]:
    """Every reason the apply would fail, tried on a copy of `state`. With `files_to_come`
    the secrets and configs the file defines from `file:` or `content:` count as there (the
    CLI checks and creates them after this check and before the apply); without, they must
    exist already. External ones must exist either way. The networks the file defines are
    made on the copy first, as the apply makes them before its services."""
    trial = state.trial_copy()
    problems = []
    for i, network in enumerate(networks_to_come):
        if network.name in networks(trial):
            continue
        if network.external:
            problems.append(
                ApplyProblem(
                    network.where,
                    f"external, but the cluster has no network {network.name!r}: "
                    f"create it first (shoal network create {network.name})",
                    400,
                    network.where,
                )
            )
            continue
        made = trial.apply(
            CreateNetwork(
                f"trial-net-{i}",
                network.name,
                0.0,
                network.subnet,
                network.internal,
                network.attachable,
                dict(network.labels),
            )
        )
        if not made.ok:
            problems.append(ApplyProblem(network.where, made.error, made.code, network.where))
    for source in files:
        table = blobs(trial, source.kind)
        if source.name in table:
            continue
        if source.external or not files_to_come:
            problems.append(
                ApplyProblem(
                    source.where,
                    f"{'external, but ' if source.external else ''}the cluster has no "
                    f"{source.kind} {source.name!r}: create it first (shoal {source.kind} create "
                    f"{source.name} FILE)",
                    400,
                    source.where,
                )
            )
        # From here on it is there: a service using it is not refused for it a second time.
        table[source.name] = Blob("", source.name, source.kind, 0, b"")
    for i, step in enumerate(steps):
        if step.action in ("unchanged", "remove"):
            continue
        cmd = (
            CreateService(f"trial-{i}", step.spec, 0.0)
            if step.action == "create"
            else UpdateService(step.spec, 0.0, step.expected_version)
        )
        result = trial.apply(cmd)
        if not result.ok:
            field, error = field_of(result.error)
            problems.append(
                ApplyProblem(
                    step.spec.name,
                    error,
                    result.code,
                    f"services.{step.spec.name}.{field}" if field else None,
                )
            )
    for i, cron in enumerate(cron_steps):  # after the services, as the apply makes them
        if cron.action in ("unchanged", "remove"):
            continue
        result = trial.apply(
            CreateCron(f"trial-cron-{i}", cron.spec, 0.0)
            if cron.action == "create"
            else UpdateCron(cron.spec, 0.0)
        )
        if not result.ok:
            field, error = field_of(result.error)
            problems.append(
                ApplyProblem(
                    cron.spec.name,
                    error,
                    result.code,
                    f"crons.{cron.spec.name}.{field}" if field else None,
                )
            )
    return problems
