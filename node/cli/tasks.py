"""Task listings: `service ps`, `node ps` and `stack ps` print tasks alike, and take the
same `--filter`, `-q` and `--no-trunc` as `docker service ps` and `docker node ps`.

Filters are read from the listing the API gives (it is the whole cluster's state, already
bounded): keys are ANDed, values of one key ORed, as docker does.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from node.cli import output
from node.cli.common import emit

# docker's keys and what each compares: `name` a task's name (web.2) or its service,
# `node` its node's name or id, `id` a prefix of its id.
FILTER_KEYS = ("desired-state", "id", "name", "node")
DESIRED_STATES = ("running", "shutdown")
SHORT_ID = 12


def filter_arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or key not in FILTER_KEYS:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}, got {text!r}"
        )
    if key == "desired-state" and value not in DESIRED_STATES:
        raise argparse.ArgumentTypeError(
            f"desired-state is one of {', '.join(DESIRED_STATES)}, not {value!r}"
        )
    if not value:
        raise argparse.ArgumentTypeError(f"{key} needs a value")
    return key, value


def add_listing_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filter",
        type=filter_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"keep tasks matching: {', '.join(FILTER_KEYS)} (repeat a key for any of its values)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print task ids only")
    parser.add_argument("--no-trunc", action="store_true", help="print whole task ids")


def task_name(task: dict) -> str:
    """`web.2` for a replicated task, `web.NODE` for a global one (which has no slot), as
    `docker service ps` names them; `service logs` prefixes lines with the same name."""
    return f"{task['service']}.{task['slot'] or task['node_name'] or task['node_id']}"


def _matches(task: dict, key: str, value: str) -> bool:
    if key == "desired-state":
        return task["desired"] == value
    if key == "id":
        return task["id"].startswith(value)
    if key == "name":
        return value in (task_name(task), task["service"])
    return value in (task["node_name"], task["node_id"])


def select(tasks: Iterable[dict], filters: list[tuple[str, str]]) -> list[dict]:
    wanted: dict[str, set[str]] = {}
    for key, value in filters:
        wanted.setdefault(key, set()).add(value)
    return [
        t
        for t in tasks
        if all(any(_matches(t, key, v) for v in values) for key, values in wanted.items())
    ]


def task_error(task: dict) -> str:
    """One line for a table cell: a health check's output can run to several lines (curl's
    progress meter), which `service inspect` and `-o json` show whole."""
    if task["error"]:
        lines = task["error"].strip().splitlines() or [""]
        return lines[0] + (" ..." if len(lines) > 1 else "")
    return f"pending: {task['pending_reason']}" if task["pending_reason"] else ""


def log_prefix(task: dict) -> str:
    """`web.2.ID@NODE |`: the name `service ps` shows, the task's short id and its node."""
    return f"{task_name(task)}.{task['id'][:SHORT_ID]}@{task['node_name']} |"


def render_tasks(rows: list[dict], *, quiet: bool = False, no_trunc: bool = False) -> None:
    def ident(task: dict) -> str:
        return task["id"] if no_trunc else task["id"][:SHORT_ID]

    if quiet:
        for task in rows:
            print(ident(task))
        return
    output.table(
        ("ID", "NAME", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"),
        (
            (
                ident(t),
                task_name(t) + (" (canary)" if t.get("canary") else ""),
                t["node_name"],
                t["desired"],
                f"{t['state']} {output.ago(t['updated_at'] or t['created_at'])}",
                task_error(t),
            )
            for t in rows
        ),
    )


def print_listing(args: argparse.Namespace, tasks: list[dict]) -> int:
    """The tasks `args.filter` keeps: their ids (`-q`, as docker prints them whatever the
    format), JSON (`-o json`) or a table."""
    rows = select(tasks, args.filter)
    if args.quiet:
        render_tasks(rows, quiet=True, no_trunc=args.no_trunc)
        return 0
    return emit(args, rows, lambda r: render_tasks(r, quiet=args.quiet, no_trunc=args.no_trunc))
