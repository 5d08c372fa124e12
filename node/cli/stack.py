"""`shoal stack ls|ps|rm`: the services applied from one file, as `docker stack` shows them.

A stack is the label `com.docker.stack.namespace` that `shoal apply` puts on each service
of a file (`--stack NAME`, a Compose file's `name:`, or the file's directory name)."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import TYPE_CHECKING

from node.cli import output, tasks
from node.cli.common import UsageError, emit

if TYPE_CHECKING:
    from node.client import ShoalClient

# The same label as node.manifests.STACK_LABEL, named here so that listing stacks does not
# load the file translators.
STACK_LABEL = "com.docker.stack.namespace"


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("stack", help="the services applied from one file")
    ssub = group.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = ssub.add_parser("ls", parents=[common], help="stacks and their number of services")
    ls.set_defaults(handler=_ls)
    ps = ssub.add_parser("ps", parents=[common], help="the tasks of a stack's services")
    ps.add_argument("name", metavar="STACK")
    tasks.add_listing_flags(ps)
    ps.set_defaults(handler=_ps)
    rm = ssub.add_parser("rm", parents=[common], help="remove stacks' services")
    rm.add_argument("names", nargs="+", metavar="STACK")
    rm.set_defaults(handler=_rm)


async def _stack_services(client: ShoalClient, name: str) -> list[str]:
    names = [
        s["name"]
        for s in await client.get("/v1/services")
        if s["spec"]["labels"].get(STACK_LABEL) == name
    ]
    if not names:
        raise UsageError(f"nothing found in stack: {name}")
    return names


async def _ls(args: argparse.Namespace, client: ShoalClient) -> int:
    counts = Counter(
        s["spec"]["labels"][STACK_LABEL]
        for s in await client.get("/v1/services")
        if STACK_LABEL in s["spec"]["labels"]
    )
    rows = [{"name": name, "services": n} for name, n in sorted(counts.items())]
    return emit(
        args,
        rows,
        lambda rows: output.table(("NAME", "SERVICES"), ((r["name"], r["services"]) for r in rows)),
    )


async def _ps(args: argparse.Namespace, client: ShoalClient) -> int:
    names = set(await _stack_services(client, args.name))
    return tasks.print_listing(
        args, [t for t in await client.get("/v1/tasks") if t["service"] in names]
    )


async def _rm(args: argparse.Namespace, client: ShoalClient) -> int:
    """An empty file applied with --prune: the stack's services, port selectors and cron jobs
    go, through the same plan as any apply."""
    done = []
    for stack in args.names:
        answer = await client.request(
            "POST",
            "/v1/apply",
            data=b"[]",
            content_type="application/yaml",
            params={"stack": stack, "prune": "1"},
        )
        removed = [("service", s["name"]) for s in answer["services"] if s["action"] == "removed"]
        removed += [
            ("cron job", c["name"]) for c in answer.get("crons", ()) if c["action"] == "removed"
        ]
        if not removed and not answer.get("selectors"):
            raise UsageError(f"nothing found in stack: {stack}")
        done += [{"stack": stack, "kind": kind, "deleted": name} for kind, name in removed]
    return emit(
        args,
        done,
        lambda rows: print("\n".join(f"Removing {r['kind']} {r['deleted']}" for r in rows)),
    )
