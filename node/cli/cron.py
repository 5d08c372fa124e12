"""`shoal cron ...`: start a job on a schedule (Kubernetes CronJobs)."""

from __future__ import annotations

import argparse
import datetime
import typing
from typing import TYPE_CHECKING

from consensus.crons import CronSpec
from node.cli import output
from node.cli.common import emit
from node.cli.job import add_template_flags, render_jobs, template_body

if TYPE_CHECKING:
    from node.client import ShoalClient


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    cron = sub.add_parser("cron", help="start jobs on a schedule")
    csub = cron.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = csub.add_parser("create", parents=[common], help="create a cron job")
    create.add_argument(
        "--name",
        required=True,
        help="cron job name (a DNS label of at most 52 "
        "characters); each run is NAME-<epoch seconds>",
    )
    create.add_argument(
        "--schedule",
        required=True,
        help='five cron fields ("*/5 * * * *"; a sixth sets seconds) or @hourly, @daily ...',
    )
    create.add_argument("--timezone", help="the schedule's time zone (default UTC)")
    create.add_argument(
        "--concurrency",
        choices=typing.get_args(typing.get_type_hints(CronSpec)["concurrency"]),
        help="allow overlapping runs, forbid them (a due run waits, missed past "
        "the starting deadline) or replace the running one (default allow)",
    )
    create.add_argument(
        "--starting-deadline",
        help="a run not started this long after its time is missed (default 0s = never)",
    )
    create.add_argument("--history", type=int, help="finished runs kept (default 3)")
    add_template_flags(create)
    create.set_defaults(handler=_create)

    csub.add_parser("ls", parents=[common], help="list cron jobs").set_defaults(handler=_ls)
    inspect = csub.add_parser(
        "inspect", parents=[common], help="a cron job: schedule, last and next run, its runs"
    )
    inspect.add_argument("name", metavar="CRON")
    inspect.set_defaults(handler=_inspect)
    rm = csub.add_parser("rm", parents=[common], help="remove cron jobs and the runs they started")
    rm.add_argument("names", nargs="+", metavar="CRON")
    rm.set_defaults(handler=_rm)


def create_body(args: argparse.Namespace) -> dict:
    template = {k: v for k, v in template_body(args, args.name).items() if k != "name"}
    body = {"name": args.name, "schedule": args.schedule, "template": template}
    for flag in ("timezone", "concurrency", "starting_deadline", "history"):
        if getattr(args, flag) is not None:
            body[flag] = getattr(args, flag)
    return body


def _render(rows: list[dict]) -> None:
    output.table(
        ("NAME", "SCHEDULE", "TIMEZONE", "CONCURRENCY", "ACTIVE", "LAST RUN", "NEXT RUN"),
        (
            (
                c["name"],
                c["schedule"],
                c["timezone"],
                c["concurrency"],
                len(c["active"]),
                output.ago(c["last_scheduled"]) if c["last_scheduled"] else "never",
                _when(c["next"]),
            )
            for c in rows
        ),
    )


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _render_one(cron: dict) -> None:
    print(
        f"{cron['name']}: {cron['schedule']} ({cron['timezone']}), next run {_when(cron['next'])}"
    )
    if cron["last_error"]:
        print(f"last run could not start: {cron['last_error']}")
    render_jobs(cron["runs"])


async def _create(args, client: ShoalClient) -> int:
    cron = await client.post("/v1/crons", create_body(args))
    return emit(args, cron, lambda c: print(c["id"]))


async def _ls(args, client: ShoalClient) -> int:
    return emit(args, await client.get("/v1/crons"), _render)


async def _inspect(args, client: ShoalClient) -> int:
    return emit(args, await client.get(f"/v1/crons/{args.name}"), _render_one)


async def _rm(args, client: ShoalClient) -> int:
    done = [await client.delete(f"/v1/crons/{name}") for name in args.names]
    return emit(args, done, lambda rows: print("\n".join(r["deleted"] for r in rows)))
