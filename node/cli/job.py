"""`shoal job ...`: run tasks to completion (Kubernetes Jobs, Swarm's replicated and global
jobs). The flags of a job's template are shared with `shoal cron create` (node.cli.cron).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from node.cli import output
from node.cli import service as cli_service
from node.cli.common import emit, kv, needs_loop
from node.cli.service import (
    LIST_EDITS,
    MAP_EDITS,
    SETTINGS,
    Setting,
    _add_settings,
    _dest,
    settings_body,
)

if TYPE_CHECKING:
    from node.client import ShoalClient

JOB_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "--completions",
        ("job", "completions"),
        int,
        "tasks that must succeed (replicated jobs; a global job runs once per node)",
    ),
    Setting(
        "--parallelism",
        ("job", "parallelism"),
        int,
        "tasks running at once (0 = all; a global job runs on all nodes at once by default)",
    ),
    Setting(
        "--backoff-limit",
        ("job", "backoff_limit"),
        int,
        "failed tasks tolerated before the job fails",
    ),
    Setting(
        "--backoff-delay",
        ("job", "backoff_delay"),
        help="wait before retrying a failed task, doubled per failure of its slot",
    ),
    Setting(
        "--deadline",
        ("job", "deadline"),
        help="the job fails if it has not finished this long after it started (0s = none)",
    ),
    Setting(
        "--ttl-after-finished",
        ("job", "ttl_after_finished"),
        help="remove the finished job, its tasks and their logs this long after it ended "
        "(0s = kept until removed)",
    ),
)
# The service flags that mean the same for a job's tasks.
_TASK_FLAGS = (
    "--entrypoint",
    "--reserve-cpu",
    "--reserve-memory",
    "--limit-cpu",
    "--limit-memory",
    "--stop-grace-period",
)
TASK_SETTINGS = tuple(s for s in SETTINGS if s.flag in _TASK_FLAGS)
_TASK_LISTS = tuple(
    e for e in LIST_EDITS if e.field in ("constraints", "secrets", "configs", "volumes")
)


def add_template_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that describe a job: what runs, where, how often it may fail."""
    parser.add_argument(
        "--mode",
        choices=("replicated", "global"),
        help="replicated: --completions tasks; global: one task per node (default replicated)",
    )
    for stem, _field, short in MAP_EDITS:
        parser.add_argument(short, f"--{stem}", type=kv, action="append", default=[], metavar="K=V")
    for edit in _TASK_LISTS:
        parser.add_argument(
            f"--{edit.stem}",
            dest=_dest(edit.stem),
            type=edit.type,
            action="append",
            default=[],
            help=edit.help,
        )
    _add_settings(parser, JOB_SETTINGS + TASK_SETTINGS, defaults=True)
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument(
        "command_args",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="the command and its arguments (replace the image's default)",
    )


def template_body(args: argparse.Namespace, name: str) -> dict:
    """The plain job spec that the template flags describe."""
    body: dict = {
        "name": name,
        "image": args.image,
        **settings_body(args, JOB_SETTINGS + TASK_SETTINGS),
    }
    body.setdefault("job", {})
    if args.mode:
        body["mode"] = args.mode
    if args.mode == "global" and args.parallelism is None:
        body["job"]["parallelism"] = 0  # once on every node, all at once, as Swarm's global-job
    if args.command_args:
        body["args"] = args.command_args
    for stem, spec_field, _short in MAP_EDITS:
        if getattr(args, stem):
            body[spec_field] = dict(getattr(args, stem))
    for edit in _TASK_LISTS:
        if getattr(args, _dest(edit.stem)):
            body[edit.field] = getattr(args, _dest(edit.stem))
    return body


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    job = sub.add_parser("job", help="run tasks to completion, list jobs, their tasks and logs")
    jsub = job.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = jsub.add_parser("run", parents=[common], help="run a job")
    run.add_argument("--name", required=True, help="job name (a DNS label)")
    add_template_flags(run)
    run.set_defaults(handler=_run)

    jsub.add_parser("ls", parents=[common], help="list jobs").set_defaults(handler=_ls)
    ps = jsub.add_parser(
        "ps", parents=[common], help="a job's tasks: where each ran, its exit code and why it ended"
    )
    ps.add_argument("name", metavar="JOB")
    ps.set_defaults(handler=_ps)
    inspect = jsub.add_parser("inspect", parents=[common], help="a job's spec, status and tasks")
    inspect.add_argument("name", metavar="JOB")
    inspect.set_defaults(handler=_inspect)
    logs = jsub.add_parser("logs", parents=[common], help="the output of a job's tasks")
    logs.add_argument("name", metavar="JOB")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="stream new output until the job is removed"
    )
    logs.add_argument("--tail", default="all", help="lines per task from the end (default all)")
    logs.set_defaults(handler=_logs)
    rm = jsub.add_parser("rm", parents=[common], help="remove jobs (their running tasks stop)")
    rm.add_argument("names", nargs="+", metavar="JOB")
    rm.set_defaults(handler=_rm)


def render_jobs(rows: list[dict]) -> None:
    output.table(
        ("ID", "NAME", "MODE", "STATUS", "COMPLETIONS", "FAILED", "ACTIVE", "CREATED"),
        (
            (
                j["id"],
                j["name"],
                j["mode"],
                j["status"],
                f"{j['succeeded']}/{j['completions']}",
                j["failed"],
                j["active"],
                output.ago(j["created_at"]),
            )
            for j in rows
        ),
    )


def _render_job_tasks(job: dict) -> None:
    if job["reason"]:
        print(f"{job['name']}: {job['status']}: {job['reason']}")
    output.table(
        ("ID", "SLOT", "NODE", "ATTEMPT", "DESIRED", "STATE", "EXIT CODE", "REASON"),
        (
            (
                t["id"][:12],
                t["slot"] or "-",
                t["node_name"],
                t["attempt"],
                t["desired"],
                t["state"],
                "" if t["exit_code"] is None else t["exit_code"],
                t["reason"],
            )
            for t in job["tasks"]
        ),
    )


async def _run(args, client: ShoalClient) -> int:
    job = await client.post("/v1/jobs", template_body(args, args.name))
    return emit(args, job, lambda j: print(j["id"]))


async def _ls(args, client: ShoalClient) -> int:
    return emit(args, await client.get("/v1/jobs"), render_jobs)


async def _ps(args, client: ShoalClient) -> int:
    return emit(args, await client.get(f"/v1/jobs/{args.name}"), _render_job_tasks)


async def _inspect(args, client: ShoalClient) -> int:
    return emit(args, await client.get(f"/v1/jobs/{args.name}"), output.detail)


@needs_loop
async def _logs(args, client: ShoalClient) -> int:
    await client.get(f"/v1/jobs/{args.name}")  # 404 unless it is a job
    return await cli_service.service_logs(args, client)


async def _rm(args, client: ShoalClient) -> int:
    done = [await client.delete(f"/v1/jobs/{name}") for name in args.names]
    return emit(args, done, lambda rows: print("\n".join(r["deleted"] for r in rows)))
