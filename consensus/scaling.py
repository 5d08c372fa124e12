"""The autoscaler's one write: set a service's replica count and record why.

It is an ordinary spec change (a new version, the old spec kept for rollback; the scheduler's
rollout planner replaces no task when only the count changes), guarded by the version the
decision was made on, so a decision never undoes a user's `service scale` or update that
committed meanwhile. The record (`Service.autoscaled`) is what events and `service status`
show; the time in it comes from the command.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from consensus.autoscale import AutoscaleRecord
from consensus.codec import command
from consensus.state import ClusterState, Result, handles
from consensus.tasks import services, update_spec


@command("service.autoscale")
@dataclass(frozen=True, slots=True)
class ScaleService:
    name: str
    service_id: str
    expected_version: int
    record: AutoscaleRecord


@handles(ScaleService)
def _scale(state: ClusterState, cmd: ScaleService) -> Result:
    table = services(state)
    service = table.get(cmd.name)
    if service is None or service.id != cmd.service_id:
        return Result.fail(f"no such service {cmd.name!r}", 404)
    if service.spec.autoscale is None:
        return Result.fail(f"service {cmd.name!r} has no autoscale policy", 409)
    record = cmd.record
    if record.from_replicas != service.spec.replicas:
        return Result.fail(
            f"record.from_replicas: service {cmd.name!r} runs "
            f"{service.spec.replicas} replicas, not {record.from_replicas}",
            409,
        )
    policy = service.spec.autoscale
    if policy.clamp(record.to_replicas) != record.to_replicas:
        return Result.fail(
            f"record.to_replicas: must be within {policy.min}..{policy.max}, "
            f"not {record.to_replicas}",
            400,
        )
    spec = dataclasses.replace(service.spec, replicas=record.to_replicas)
    result = update_spec(state, spec, record.at, cmd.expected_version)
    if result.ok:
        table[cmd.name] = dataclasses.replace(table[cmd.name], autoscaled=record)
    return result
