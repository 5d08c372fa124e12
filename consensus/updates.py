"""Commands that move a service's rollout: rolling back to an earlier spec, and the progress
the leader's scheduler records. See consensus.rollout for the record itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from consensus.codec import command
from consensus.rollout import Rollout
from consensus.state import ClusterState, Result, handles
from consensus.tasks import services, tasks, update_spec


@command("service.rollback")
@dataclass(frozen=True, slots=True)
class RollbackService:
    """Make an earlier spec (`to_version`, default the previous one) current again as a new
    version, replacing tasks by the abandoned spec's `rollback` config. With
    `expected_version`, fail (409) if the service changed meanwhile: an automatic rollback
    must never undo an update made after the one that failed."""

    name: str
    at: float
    to_version: int = 0
    expected_version: int = 0
    reason: str = ""


@command("service.rollout")
@dataclass(frozen=True, slots=True)
class RecordRollout:
    """The scheduler's view of a rollout's progress; stale (for another version) is refused."""

    name: str
    rollout: Rollout


@command("service.promote")
@dataclass(frozen=True, slots=True)
class PromoteService:
    """Go on with an update waiting in its canary phase: each canary takes the slot it ran
    beside (its old task stops) and the rest of the tasks are replaced. Proposed by hand, or
    by the leader's scheduler once `auto_promote` has passed."""

    name: str
    at: float


@handles(PromoteService)
def _promote(state: ClusterState, cmd: PromoteService) -> Result:
    table = services(state)
    service = table.get(cmd.name)
    if service is None:
        return Result.fail(f"no such service {cmd.name!r}", 404)
    rollout = service.rollout
    if rollout is None or rollout.state != "canary" or rollout.version != service.version:
        return Result.fail(f"service {cmd.name!r} has no canary waiting for a promote", 409)
    table[cmd.name] = dataclasses.replace(
        service,
        rollout=dataclasses.replace(
            rollout,
            state="updating",
            promoted=True,
            updated_at=cmd.at,
            message=f"canaries promoted: updating the rest to version {service.version}",
        ),
    )
    task_table = tasks(state)
    canaries = [
        t
        for t in task_table.values()
        if t.service_id == service.id and t.canary and t.desired == "running"
    ]
    for task in canaries:
        task_table[task.id] = dataclasses.replace(task, canary=False, updated_at=cmd.at)
    return Result(True, value={"state": "updating", "canaries": len(canaries)})


@command("service.rebalance")
@dataclass(frozen=True, slots=True)
class RequestRebalance:
    """Move tasks to spread the service again (see scheduler.rebalance), for a while."""

    name: str
    at: float


@handles(RequestRebalance)
def _request_rebalance(state: ClusterState, cmd: RequestRebalance) -> Result:
    table = services(state)
    service = table.get(cmd.name)
    if service is None:
        return Result.fail(f"no such service {cmd.name!r}", 404)
    spec = service.spec
    if spec.rebalance == "off" or spec.mode != "replicated" or spec.job is not None:
        return Result.fail(
            f"service {cmd.name!r} is not rebalanced: it is {spec.mode}"
            + (" (a job)" if spec.job is not None else "")
            + (" with rebalance off" if spec.rebalance == "off" else ""),
            409,
        )
    table[cmd.name] = dataclasses.replace(service, rebalance_requested_at=cmd.at)
    return Result(True, value={"requested_at": cmd.at})


@handles(RollbackService)
def _rollback(state: ClusterState, cmd: RollbackService) -> Result:
    service = services(state).get(cmd.name)
    if service is None:
        return Result.fail(f"no such service {cmd.name!r}", 404)
    if cmd.expected_version and cmd.expected_version != service.version:
        return Result.fail(
            f"service {cmd.name!r} is at version {service.version}, not "
            f"{cmd.expected_version}: it changed meanwhile",
            409,
        )
    if not service.history:
        return Result.fail(f"service {cmd.name!r} has no earlier spec to roll back to", 409)
    target = cmd.to_version or service.history[-1].version
    spec = service.spec_at(target)
    if spec is None:
        kept = ", ".join(str(h.version) for h in service.history)
        return Result.fail(
            f"to_version: version {target} of {cmd.name!r} is not kept (kept: {kept})", 404
        )
    if spec == service.spec:
        return Result.fail(
            f"to_version: service {cmd.name!r} already runs the spec of version {target}", 409
        )
    rollout = Rollout(
        service.id,
        service.version + 1,
        service.version,
        kind="rollback",
        state="rolling_back",
        config=service.spec.rollback,
        started_at=cmd.at,
        updated_at=cmd.at,
        reason=cmd.reason or "requested",
        message=f"rolling back to the spec of version {target}",
    )
    result = update_spec(state, spec, cmd.at, rollout=rollout)
    if result.ok:
        result = dataclasses.replace(result, value={**result.value, "rolled_back_to": target})
    return result


@handles(RecordRollout)
def _record(state: ClusterState, cmd: RecordRollout) -> Result:
    table = services(state)
    service = table.get(cmd.name)
    rollout = cmd.rollout
    if service is None or service.id != rollout.service_id:
        return Result.fail(f"no such service {cmd.name!r}", 404)
    if service.version != rollout.version:
        return Result.fail(
            f"stale rollout: service {cmd.name!r} is at version {service.version}, "
            f"not {rollout.version}",
            409,
        )
    table[cmd.name] = dataclasses.replace(service, rollout=rollout)
    return Result(True, value={"state": rollout.state})
