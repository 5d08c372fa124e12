"""`shoal secret ...` and `shoal config ...`: create from a file or standard input, list,
inspect, remove. The two groups are the same commands over `/v1/secrets` and `/v1/configs`."""

from __future__ import annotations

import argparse
import base64
from typing import TYPE_CHECKING

from node.cli import output
from node.cli.common import emit, needs_loop, read_file

if TYPE_CHECKING:
    from node.client import ShoalClient

KINDS = ("secret", "config")


def create_body(name: str, data: bytes) -> dict:
    return {"name": name, "data": base64.b64encode(data).decode()}


def _render_rows(rows: list[dict]) -> None:
    output.table(
        ("ID", "NAME", "SIZE", "CREATED", "SERVICES"),
        (
            (
                r["id"],
                r["name"],
                output.size(r["size"]),
                output.ago(r["created_at"]),
                ",".join(r["services"]) or "-",
            )
            for r in rows
        ),
    )


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    for kind in KINDS:
        group = sub.add_parser(kind, help=f"create, list, inspect and remove {kind}s")
        ksub = group.add_subparsers(dest="command", required=True, metavar="COMMAND")
        create = ksub.add_parser("create", parents=[common], help=f"create a {kind}")
        create.add_argument("name", metavar="NAME")
        create.add_argument(
            "file", metavar="FILE", help="the content's file ('-' reads standard input)"
        )
        create.set_defaults(handler=_create, kind=kind)
        ls = ksub.add_parser("ls", parents=[common], help=f"list {kind}s (never their content)")
        ls.set_defaults(handler=_ls, kind=kind)
        shown = "without its content" if kind == "secret" else "with its content (base64)"
        inspect = ksub.add_parser("inspect", parents=[common], help=f"show a {kind} {shown}")
        inspect.add_argument("name", metavar="NAME")
        inspect.set_defaults(handler=_inspect, kind=kind)
        rm = ksub.add_parser("rm", parents=[common], help=f"remove {kind}s no service uses")
        rm.add_argument("names", nargs="+", metavar="NAME")
        rm.set_defaults(handler=_rm, kind=kind)


@needs_loop
async def _create(args: argparse.Namespace, client: ShoalClient) -> int:
    data = await read_file(args.file)
    answer = await client.post(f"/v1/{args.kind}s", create_body(args.name, data))
    return emit(args, answer, lambda a: print(a["id"]))


async def _ls(args: argparse.Namespace, client: ShoalClient) -> int:
    return emit(args, await client.get(f"/v1/{args.kind}s"), _render_rows)


async def _inspect(args: argparse.Namespace, client: ShoalClient) -> int:
    answer = await client.get(f"/v1/{args.kind}s/{args.name}")
    return emit(args, answer, output.detail)


async def _rm(args: argparse.Namespace, client: ShoalClient) -> int:
    done = [await client.delete(f"/v1/{args.kind}s/{name}") for name in args.names]
    return emit(args, done, lambda rows: print("\n".join(r["deleted"] for r in rows)))
