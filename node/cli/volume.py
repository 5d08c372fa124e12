"""`shoal volume ls`: the named volumes services mount and the nodes holding their data."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from node.cli import output
from node.cli.common import emit

if TYPE_CHECKING:
    from node.client import ShoalClient


def _render(rows: list[dict]) -> None:
    output.table(
        ("VOLUME", "SERVICES", "NODES"),
        ((r["name"], ",".join(r["services"]), ",".join(r["nodes"]) or "-") for r in rows),
    )


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("volume", help="list named volumes")
    vsub = group.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = vsub.add_parser(
        "ls",
        parents=[common],
        help="named volumes, their services and the nodes holding their data",
    )
    ls.set_defaults(handler=_ls)


async def _ls(args: argparse.Namespace, client: ShoalClient) -> int:
    return emit(args, await client.get("/v1/volumes"), _render)
