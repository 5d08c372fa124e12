"""HTTP API: services, their tasks, and applying declarative files.

Specs are validated here with `parse_service_spec` (400 naming the field) and again by the
state machine at commit time; ids and timestamps are stamped here, never inside `apply`.
Reads come from this node's replica; writes are committed through the leader before the
answer goes out, so the answer always shows the write.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

from consensus.crons import CreateCron, DeleteCron, UpdateCron, crons
from consensus.mesh_ports import assign_mesh_ports, published_ingress
from consensus.nodes import nodes
from consensus.selectors import DeleteSelector, PutSelector, port_selectors
from consensus.services import ServiceSpec, merge_spec, parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import (
    CreateService,
    DeleteService,
    Service,
    Task,
    UpdateService,
    services,
    tasks,
    tasks_of,
    tasks_of_service,
)
from consensus.updates import PromoteService, RequestRebalance, RollbackService
from consensus.wire import WireError, from_plain, to_plain
from node.api.acl import claim_service, refuse_new_host_binds
from node.api.context import NODE, NodeContext
from node.api.http_util import (
    HttpError,
    is_json_type,
    json_body,
    parse_count,
    query_flag,
    read_body,
    require_type,
    result_or_raise,
)
from node.api.networks import ensure_networks

if TYPE_CHECKING:
    from node.manifests import Origin
    from node.manifests.plan import CronStep

routes = web.RouteTableDef()

# A PATCH that loses a race with another writer re-reads and retries this many times.
PATCH_ATTEMPTS = 3

_DONE = {"create": "created", "update": "updated", "remove": "removed", "unchanged": "unchanged"}
# The largest service spec and the largest file `shoal apply` sends, in bytes.
SPEC_LIMIT = 256 * 1024
MANIFEST_LIMIT = 1 << 20
_MANIFEST_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _is_manifest_type(content_type: str) -> bool:
    return content_type in _MANIFEST_TYPES or is_json_type(content_type)


# -- pure helpers ---------------------------------------------------------------------------


def new_service_id() -> str:
    return secrets.token_hex(6)


def find_service(state: ClusterState, ref: str) -> Service | None:
    """A service by name, or by its id."""
    table = services(state)
    return table.get(ref) or next((s for s in table.values() if s.id == ref), None)


def tasks_summary(service: Service, own_tasks: list[Task]) -> dict:
    """Desired and running replicas, canaries beside them (an update's canary phase) and a
    count of the current tasks by observed state."""
    live = [t for t in own_tasks if t.service_id == service.id and t.desired == "running"]
    canaries = sum(t.canary for t in live)
    spec = service.spec
    if spec.mode == "global":
        desired = len(live)
    else:  # a replicated job wants its completions
        desired = spec.job.completions if spec.job is not None else spec.replicas
    return {
        "desired": desired,
        "running": sum(t.state == "running" and not t.canary for t in live),
        "canaries": canaries,
        "states": dict(sorted(Counter(t.state for t in live).items())),
    }


def service_json(service: Service, own_tasks: list[Task]) -> dict:
    return {
        "id": service.id,
        "name": service.name,
        "version": service.version,
        "previous_versions": len(service.history),
        "created_at": service.created_at,
        "updated_at": service.updated_at,
        "spec": to_plain(service.spec),
        "replicas": tasks_summary(service, own_tasks),
        "rollout": to_plain(service.rollout) if service.rollout else None,
        "autoscaled": to_plain(service.autoscaled) if service.autoscaled else None,
    }


def task_json(task: Task, node_name: str) -> dict:
    body = to_plain(task)
    body["node_name"] = node_name
    # The scheduler keeps why a task waits in `message`; name it for readers of the API.
    body["pending_reason"] = task.message if task.state == "pending" else ""
    return body


def with_mesh_ports(
    specs: tuple[ServiceSpec, ...],
    wanted: tuple[tuple[str, int, str], ...],
    current: dict[str, Service],
) -> tuple[ServiceSpec, ...]:
    """`specs` with their Compose target-only ports given mesh ports (as Swarm does)."""
    if not wanted:
        return specs
    names = {spec.name for spec in specs}
    taken = published_ingress(s.spec for s in current.values() if s.name not in names)
    taken |= published_ingress(specs)
    return tuple(
        assign_mesh_ports(
            spec,
            {(t, p) for name, t, p in wanted if name == spec.name},
            current[spec.name].spec if spec.name in current else None,
            taken,
        )
        for spec in specs
    )


# -- reading ----------------------------------------------------------------------------


def _service_or_404(shoal: NodeContext, ref: str) -> Service:
    with shoal.store.view() as state:
        service = find_service(state, ref)
    if service is None:
        raise HttpError(404, f"no such service {ref!r}")
    return service


def _answer(shoal: NodeContext, ref: str, status: int = 200) -> web.Response:
    with shoal.store.view() as state:
        service = find_service(state, ref)
        own = tasks_of(state, service.name) if service else []
    if service is None:
        raise HttpError(404, f"no such service {ref!r}")
    return web.json_response(service_json(service, own), status=status)


@routes.get("/v1/services")
async def list_services(request: web.Request) -> web.Response:
    with request.app[NODE].store.view() as state:
        rows = [
            service_json(s, tasks_of_service(state, s))
            for s in sorted(services(state).values(), key=lambda s: s.name)
        ]
    return web.json_response(rows)


@routes.get("/v1/services/{ref}")
async def get_service(request: web.Request) -> web.Response:
    return _answer(request.app[NODE], request.match_info["ref"])


@routes.get("/v1/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    name = request.query.get("service")
    with shoal.store.view() as state:
        if name is None:
            rows = sorted(
                tasks(state).values(),
                key=lambda t: (t.service, t.slot, t.node_id, t.created_at, t.id),
            )
        else:
            service = find_service(state, name)
            rows = tasks_of(state, service.name if service else name)
            if not rows and service is None:
                raise HttpError(404, f"no such service {name!r}", "service")
        names = {n.id: n.name for n in nodes(state).values()}
    return web.json_response([task_json(t, names.get(t.node_id, "")) for t in rows])


# -- writing ----------------------------------------------------------------------------


@routes.post("/v1/services")
async def create_service(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    spec = parse_service_spec(await json_body(request, SPEC_LIMIT))
    claim_service(request, spec.name)
    refuse_new_host_binds(request, spec)
    with shoal.store.view() as state:
        taken = spec.name in services(state)
    if taken:  # the state machine checks again at commit; this answer names the field
        raise HttpError(409, f"service {spec.name!r} already exists", "name")
    result_or_raise(await shoal.control.submit(CreateService(new_service_id(), spec, time.time())))
    return _answer(shoal, spec.name, status=201)


def _version_query(request: web.Request) -> int:
    return parse_count(request.query.get("version", "0"), "version", "a version number")


@routes.patch("/v1/services/{ref}")
async def patch_service(request: web.Request) -> web.Response:
    """Merge the body's top-level fields into the spec. With `?version=N` the write fails
    (409) unless the service is still at version N; without it, a lost race is retried on
    a fresh read."""
    shoal = request.app[NODE]
    patch = await json_body(request, SPEC_LIMIT)
    expected = _version_query(request)
    for _ in range(PATCH_ATTEMPTS):
        service = _service_or_404(shoal, request.match_info["ref"])
        if isinstance(patch, dict) and patch.get("name", service.name) != service.name:
            raise HttpError(400, "a service cannot be renamed; create a new one", "name")
        spec = merge_spec(service.spec, patch)
        refuse_new_host_binds(request, spec, service.spec)
        if "replicas" in patch and spec.mode == "global":
            raise HttpError(
                400,
                "a global service runs one task per node; it has no replica count to set",
                "replicas",
            )
        result = await shoal.control.submit(
            UpdateService(spec, time.time(), expected_version=expected or service.version)
        )
        if result.ok or expected or _current_version(shoal, service.name) == service.version:
            result_or_raise(result)
            return _answer(shoal, service.name)
    raise HttpError(409, f"service {service.name!r} kept changing while being updated; retry")


def _current_version(shoal: NodeContext, name: str) -> int:
    with shoal.store.view() as state:
        service = services(state).get(name)
    return service.version if service else 0


@routes.post("/v1/services/{ref}/rollback")
async def rollback_service(request: web.Request) -> web.Response:
    """Return to an earlier spec: body `{"to_version": N}`, by default the previous one."""
    shoal = request.app[NODE]
    body = await json_body(request) if request.can_read_body else {}
    if not isinstance(body, dict) or set(body) - {"to_version"}:
        raise HttpError(400, "the body may only hold to_version", "body")
    try:
        to_version = from_plain(int, body.get("to_version", 0), "to_version")
    except WireError as exc:
        raise HttpError(400, exc.reason, exc.field) from None
    if to_version < 0:
        raise HttpError(400, f"must be a version number, not {to_version}", "to_version")
    service = _service_or_404(shoal, request.match_info["ref"])
    result_or_raise(
        await shoal.control.submit(
            RollbackService(service.name, time.time(), to_version=to_version, reason="requested")
        )
    )
    return _answer(shoal, service.name)


async def _act_on(request: web.Request, command: Callable[[str, float], Any]) -> web.Response:
    """Commit `command(name, now)` for the service the path names; answer the service."""
    shoal = request.app[NODE]
    service = _service_or_404(shoal, request.match_info["ref"])
    result_or_raise(await shoal.control.submit(command(service.name, time.time())))
    return _answer(shoal, service.name)


@routes.post("/v1/services/{ref}/promote")
async def promote_service(request: web.Request) -> web.Response:
    """Go on with an update waiting in its canary phase."""
    return await _act_on(request, PromoteService)


@routes.post("/v1/services/{ref}/rebalance")
async def rebalance_service(request: web.Request) -> web.Response:
    """Move tasks to spread the service over its nodes again (scheduler.rebalance)."""
    return await _act_on(request, RequestRebalance)


@routes.delete("/v1/services/{ref}")
async def delete_service(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    service = _service_or_404(shoal, request.match_info["ref"])
    result_or_raise(await shoal.control.submit(DeleteService(service.name, time.time())))
    return web.json_response({"deleted": service.name, "id": service.id})


@routes.post("/v1/apply")
async def apply_document(request: web.Request) -> web.Response:
    """Create missing services, update changed ones, then the same for cron jobs (and with
    `prune`, remove the stack's services and cron jobs the file no longer holds); report
    each and the warnings. With `dry_run`, report what would be done and do nothing."""
    shoal = request.app[NODE]
    text, origin = await _apply_input(request)
    flags = {k: query_flag(request.query, k) for k in ("strict", "dry_run", "prune")}
    # Loaded on first use: a node that never applies a file stays smaller.
    from node.api.apply_check import apply_problems
    from node.manifests import load_manifest
    from node.manifests.plan import PlanConflict, plan_manifest

    # YAML parsing is pure Python and a large file takes a while: keep it off the loop.
    manifest = await asyncio.to_thread(
        partial(load_manifest, text, strict=flags["strict"], origin=origin)
    )
    if not (
        manifest.specs
        or manifest.attachments
        or manifest.crons
        or manifest.warnings
        or flags["prune"]
    ):
        raise HttpError(400, "the document defines no services", "body")
    try:
        with shoal.store.view() as state:
            current = dict(services(state))
            try:
                manifest = dataclasses.replace(
                    manifest, specs=with_mesh_ports(manifest.specs, manifest.mesh_ports, current)
                )
            except ValueError as exc:
                raise HttpError(409, str(exc), "ports") from None
            process_nodes = tuple(n.name for n in nodes(state).values() if n.runtime == "process")
            current_crons = dict(crons(state))
            plan = plan_manifest(
                current,
                manifest,
                prune=flags["prune"],
                process_nodes=process_nodes,
                selectors=dict(port_selectors(state)),
                crons=current_crons,
            )
            problems = apply_problems(
                state,
                list(plan.steps),
                manifest.files,
                files_to_come=flags["dry_run"],
                networks_to_come=manifest.networks,
                cron_steps=plan.crons,
            )
    except PlanConflict as exc:
        raise HttpError(409, exc.reason, exc.field) from None
    for step in plan.steps:
        old = current.get(step.spec.name)
        refuse_new_host_binds(request, step.spec, old.spec if old is not None else None)
    for cron_step in plan.crons:
        old_cron = current_crons.get(cron_step.spec.name)
        refuse_new_host_binds(
            request,
            cron_step.spec.template,
            old_cron.spec.template if old_cron is not None else None,
        )
    if problems:  # all checked before anything changes: a file that fails changes nothing
        field = problems[0].field if len(problems) == 1 else None
        message = problems[0].error if field else "; ".join(map(str, problems))
        raise HttpError(
            400 if all(p.code == 400 for p in problems) else 409,
            f"{message} (nothing was applied)",
            field,
        )
    selectors = [{"name": s.name, "action": "kept"} for s in plan.keep_selectors] + [
        {"name": name, "action": "removed"} for name in plan.drop_selectors
    ]
    answer = {
        "warnings": list(plan.warnings),
        "stack": manifest.stack,
        **({"selectors": selectors} if selectors else {}),
    }
    if flags["dry_run"]:
        cron_rows = [{"name": c.spec.name, "action": _DONE[c.action]} for c in plan.crons]
        return web.json_response(
            {
                "services": [_planned(step) for step in plan.steps],
                **answer,
                **({"crons": cron_rows} if cron_rows else {}),
                "dry_run": True,
            }
        )
    network_rows = await ensure_networks(shoal, manifest.networks)
    if network_rows:
        answer["networks"] = network_rows
    for selector in plan.keep_selectors:
        result_or_raise(await shoal.control.submit(PutSelector(selector)))
    results, failures = [], []
    for step in plan.steps:
        outcome = await _apply_step(shoal, step)
        (failures if "error" in outcome else results).append(outcome)
    cron_rows = []
    for cron_step in plan.crons:  # after the services, as a cron's template may use theirs
        outcome = await _apply_cron(shoal, cron_step)
        (failures if "error" in outcome else cron_rows).append(outcome)
    if cron_rows:
        answer["crons"] = cron_rows
    if failures:
        done = ", ".join(f"{r['name']} {r['action']}" for r in results + cron_rows) or "none"
        raise HttpError(
            409,
            "; ".join(f"{f['name']}: {f['error']}" for f in failures)
            + f" (the others were applied: {done})",
        )
    for name in plan.drop_selectors:
        result_or_raise(await shoal.control.submit(DeleteSelector(name)))
    return web.json_response({"services": results, **answer})


async def _apply_input(request: web.Request) -> tuple[str, Origin]:
    """The document and its Origin: the body is the document itself (YAML or JSON), or, as
    the CLI sends it, JSON `{"document": TEXT, "variables", "directory", "home", "env_files",
    "stack"}`. `?stack=` names the stack either way."""
    from node.manifests import Origin, stack_name_problem

    require_type(request, _is_manifest_type, "application/yaml or application/json")
    raw = await read_body(request, MANIFEST_LIMIT)
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise HttpError(400, f"the document is not UTF-8 text: {exc}", "body") from None
    fields: dict = {}
    if request.content_type == "application/json" and text.lstrip().startswith("{"):
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            body = None  # not an envelope: the document reader says what is wrong with it
        if isinstance(body, dict) and isinstance(body.get("document"), str):
            fields, text = body, body["document"]
    unknown = set(fields) - {"document", "variables", "directory", "home", "env_files", "stack"}
    if unknown:
        raise HttpError(400, "unknown field", sorted(unknown)[0])
    for key in ("variables", "env_files"):
        value = fields.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise HttpError(400, "must be an object of strings", key)
    for key in ("directory", "home", "stack"):
        if not isinstance(fields.get(key, ""), str):
            raise HttpError(400, "must be a string", key)
    stack = request.query.get("stack", fields.get("stack", ""))
    if stack and stack_name_problem(stack):
        raise HttpError(400, stack_name_problem(stack) or "", "stack")
    directory = fields.get("directory", "")
    if directory and not directory.startswith("/"):
        raise HttpError(400, "must be an absolute path", "directory")
    return text, Origin(
        variables=fields.get("variables", {}),
        directory=directory,
        home=fields.get("home", ""),
        env_files=fields.get("env_files", {}),
        stack=stack,
    )


def _planned(step) -> dict:
    row = {
        "name": step.spec.name,
        "action": _DONE[step.action],
        "version": step.expected_version or None,
    }
    if step.changes:
        row["changes"] = list(step.changes)
    return row


async def _apply_cron(shoal: NodeContext, step: CronStep) -> dict:
    name = step.spec.name
    if step.action != "unchanged":
        cmd = (
            CreateCron(secrets.token_hex(6), step.spec, time.time())
            if step.action == "create"
            else UpdateCron(step.spec, time.time())
            if step.action == "update"
            else DeleteCron(name, time.time())
        )
        result = await shoal.control.submit(cmd)
        if not result.ok:
            return {"name": name, "error": result.error}
    return {"name": name, "action": _DONE[step.action]}


async def _apply_step(shoal: NodeContext, step) -> dict:
    name = step.spec.name
    if step.action == "unchanged":
        return {"name": name, "action": "unchanged", "version": step.expected_version}
    if step.action == "create":
        cmd = CreateService(new_service_id(), step.spec, time.time())
    elif step.action == "remove":
        cmd = DeleteService(name, time.time())
    else:
        cmd = UpdateService(step.spec, time.time(), expected_version=step.expected_version)
    result = await shoal.control.submit(cmd)
    if not result.ok:
        return {"name": name, "error": result.error}
    version = step.expected_version if step.action == "remove" else result.value["version"]
    return {
        "name": name,
        "action": _DONE[step.action],
        "version": version,
        **({"changes": list(step.changes)} if step.changes else {}),
    }
