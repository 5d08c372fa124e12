"""HTTP API: cron jobs (a job template started on a schedule, see consensus.crons).

The schedule and time zone are checked here, with the cron library and this node's time zone
database; the state machine checks only what needs neither.
"""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from consensus.crons import CreateCron, Cron, DeleteCron, crons, parse_cron_spec, runs_of
from consensus.store import StateVersion
from consensus.tasks import tasks_of
from consensus.wire import to_plain
from node.api.acl import claim_service, refuse_new_host_binds
from node.api.context import NODE, NodeContext
from node.api.http_util import HttpError, json_body, result_or_raise
from node.api.jobs import job_json
from scheduler.crons import next_time, schedule_problem

routes = web.RouteTableDef()


def cron_json(state: StateVersion, cron: Cron, now: float) -> dict:
    spec = cron.spec
    runs = [job_json(run, tasks_of(state, run.name)) for run in runs_of(state, cron.name)]
    for run in runs:
        del run["spec"]  # the template's, shown once below
    return {
        "id": cron.id,
        "name": cron.name,
        "schedule": spec.schedule,
        "timezone": spec.timezone,
        "concurrency": spec.concurrency,
        "starting_deadline": spec.starting_deadline,
        "history": spec.history,
        "created_at": cron.created_at,
        "last_scheduled": cron.last_scheduled or None,
        "last_job": cron.last_job,
        "last_error": cron.last_error,
        "next": next_time(cron, now),
        "active": [r["name"] for r in runs if r["status"] == "running"],
        "runs": runs,
        "template": to_plain(spec.template),
    }


def _answer(shoal: NodeContext, name: str, status: int = 200) -> web.Response:
    with shoal.store.view() as state:
        cron = crons(state).get(name)
        if cron is None:
            raise HttpError(404, f"no such cron job {name!r}")
        body = cron_json(state, cron, time.time())
    return web.json_response(body, status=status)


@routes.get("/v1/crons")
async def list_crons(request: web.Request) -> web.Response:
    now = time.time()
    with request.app[NODE].store.view() as state:
        rows = [cron_json(state, c, now) for _, c in sorted(crons(state).items())]
    return web.json_response(rows)


@routes.get("/v1/crons/{name}")
async def get_cron(request: web.Request) -> web.Response:
    return _answer(request.app[NODE], request.match_info["name"])


@routes.post("/v1/crons")
async def create_cron(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    spec = parse_cron_spec(await json_body(request))
    claim_service(request, spec.name)
    refuse_new_host_binds(request, spec.template)
    problem = schedule_problem(spec.schedule, spec.timezone, time.time())
    if problem:
        field, _, reason = problem.partition(": ")
        raise HttpError(400, reason, field)
    with shoal.store.view() as state:
        taken = spec.name in crons(state)
    if taken:
        raise HttpError(409, f"cron job {spec.name!r} already exists", "name")
    result_or_raise(await shoal.control.submit(CreateCron(secrets.token_hex(6), spec, time.time())))
    return _answer(shoal, spec.name, status=201)


@routes.delete("/v1/crons/{name}")
async def delete_cron(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    name = request.match_info["name"]
    removed = result_or_raise(await shoal.control.submit(DeleteCron(name, time.time())))
    return web.json_response({"deleted": name, "id": removed["id"]})
