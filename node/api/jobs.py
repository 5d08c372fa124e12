"""HTTP API: jobs (services whose tasks run to completion, see consensus.jobs).

A job is created, read and removed here; its tasks are read and their logs fetched through
the task routes like any service's. A job's status comes from its tasks and its recorded end.
"""

from __future__ import annotations

import time

from aiohttp import web

from consensus.job_runs import current_tasks, job_progress
from consensus.nodes import nodes
from consensus.services import parse_service_spec
from consensus.tasks import CreateService, DeleteService, Service, Task, services, tasks_of
from consensus.wire import to_plain
from node.api.acl import claim_service, refuse_new_host_binds
from node.api.context import NODE, NodeContext
from node.api.http_util import HttpError, json_body, result_or_raise
from node.api.services import find_service, new_service_id

routes = web.RouteTableDef()


def job_status(service: Service) -> str:
    return service.job_end.state if service.job_end else "running"


def task_outcome(task: Task, node_name: str) -> dict:
    """One task of a job: where it ran, how it ended (exit code) and why."""
    return {
        "id": task.id,
        "slot": task.slot,
        "node_id": task.node_id,
        "node_name": node_name,
        "desired": task.desired,
        "state": task.state,
        "exit_code": task.exit_code,
        "reason": task.error or task.message,
        "attempt": task.restarts + 1,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
    }


def job_json(service: Service, own: list[Task], node_names: dict[str, str] | None = None) -> dict:
    """A job's summary; with `node_names`, also each of its tasks (retries included)."""
    job = service.spec.job
    assert job is not None
    progress = job_progress(own)
    completions = job.completions if service.spec.mode == "replicated" else len(current_tasks(own))
    body = {
        "id": service.id,
        "name": service.name,
        "mode": service.spec.mode,
        "image": service.spec.image,
        "status": job_status(service),
        "reason": service.job_end.reason if service.job_end else "",
        "completions": completions,
        "succeeded": progress.succeeded,
        "failed": progress.failed,
        "active": progress.active,
        "created_at": service.created_at,
        "finished_at": service.job_end.at if service.job_end else None,
        "cron": service.cron,
        "spec": to_plain(service.spec),
    }
    if node_names is not None:  # each slot's attempts in the order they ran
        ordered = sorted(own, key=lambda t: (t.slot_key, t.created_at, t.id))
        body["tasks"] = [task_outcome(t, node_names.get(t.node_id, "")) for t in ordered]
    return body


def _job_or_404(service: Service | None, ref: str) -> Service:
    if service is None or service.spec.job is None:
        raise HttpError(404, f"no such job {ref!r}")
    return service


def _answer(shoal: NodeContext, ref: str, status: int = 200) -> web.Response:
    with shoal.store.view() as state:
        service = _job_or_404(find_service(state, ref), ref)
        own = tasks_of(state, service.name)
        names = {n.id: n.name for n in nodes(state).values()}
    return web.json_response(job_json(service, own, names), status=status)


@routes.get("/v1/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    with request.app[NODE].store.view() as state:
        rows = [
            (s, tasks_of(state, s.name))
            for s in sorted(services(state).values(), key=lambda s: s.name)
            if s.spec.job is not None
        ]
    return web.json_response([job_json(s, own) for s, own in rows])


@routes.get("/v1/jobs/{ref}")
async def get_job(request: web.Request) -> web.Response:
    return _answer(request.app[NODE], request.match_info["ref"])


@routes.post("/v1/jobs")
async def run_job(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    body = await json_body(request)
    if isinstance(body, dict) and body.get("job") is None:
        body = {**body, "job": {}}  # a job with every default
    spec = parse_service_spec(body)
    claim_service(request, spec.name)
    refuse_new_host_binds(request, spec)
    with shoal.store.view() as state:
        taken = spec.name in services(state)
    if taken:
        raise HttpError(409, f"a service or job named {spec.name!r} already exists", "name")
    result_or_raise(await shoal.control.submit(CreateService(new_service_id(), spec, time.time())))
    return _answer(shoal, spec.name, status=201)


@routes.delete("/v1/jobs/{ref}")
async def delete_job(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    ref = request.match_info["ref"]
    with shoal.store.view() as state:
        service = _job_or_404(find_service(state, ref), ref)
    result_or_raise(await shoal.control.submit(DeleteService(service.name, time.time())))
    return web.json_response({"deleted": service.name, "id": service.id})
