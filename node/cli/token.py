"""`shoal token create|ls|rm`: scoped API tokens (admin only). A token's secret is printed
once, by `create`; nothing shows it again."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from node.cli import output
from node.cli.common import emit

if TYPE_CHECKING:
    from node.client import ShoalClient

ROLES = ("admin", "operator", "read-only")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("token", help="create, list and revoke scoped API tokens")
    tsub = group.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = tsub.add_parser(
        "create",
        parents=[common],
        help="create a token and print its secret (shown only this once)",
    )
    create.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help="read-only: GET routes; operator: also services, jobs, cron jobs, "
        "secrets, configs, networks; admin: everything",
    )
    create.add_argument(
        "--services",
        default="",
        metavar="GLOB",
        help="an operator acts only on services whose names match (web-*)",
    )
    create.add_argument(
        "--ttl",
        default="",
        metavar="DURATION",
        help="expire after this long (90m, 24h, 720h; default: never)",
    )
    create.add_argument(
        "--name",
        default="",
        metavar="NAME",
        help="a name for ls, rm and the audit trail (default: ROLE-ID)",
    )
    create.set_defaults(handler=_create)
    ls = tsub.add_parser("ls", parents=[common], help="list tokens (never their secrets)")
    ls.set_defaults(handler=_ls)
    rm = tsub.add_parser(
        "rm", parents=[common], help="revoke tokens, by id or name: every node refuses them at once"
    )
    rm.add_argument("refs", nargs="+", metavar="ID")
    rm.set_defaults(handler=_rm)


def _expires(row: dict) -> str:
    if row["expires_at"] is None:
        return "never"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(row["expires_at"]))
    return f"expired {when}" if row["expired"] else when


def _render_rows(rows: list[dict]) -> None:
    output.table(
        ("ID", "NAME", "ROLE", "SERVICES", "CREATED", "EXPIRES", "CREATED BY"),
        (
            (
                r["id"],
                r["name"],
                r["role"],
                r["services"] or "*",
                output.ago(r["created_at"]),
                _expires(r),
                r["created_by"],
            )
            for r in rows
        ),
    )


def _print_secret(answer: dict) -> None:
    print(answer["token"])
    print(
        f"token {answer['name']} ({answer['id']}, {answer['role']}): the line above is its "
        f"secret, shown only now; pass it as --token or SHOAL_TOKEN",
        file=sys.stderr,
    )


async def _create(args: argparse.Namespace, client: ShoalClient) -> int:
    body = {"role": args.role, "name": args.name, "services": args.services, "ttl": args.ttl}
    return emit(args, await client.post("/v1/tokens", body), _print_secret)


async def _ls(args: argparse.Namespace, client: ShoalClient) -> int:
    return emit(args, await client.get("/v1/tokens"), _render_rows)


async def _rm(args: argparse.Namespace, client: ShoalClient) -> int:
    done = [await client.delete(f"/v1/tokens/{ref}") for ref in args.refs]
    return emit(args, done, lambda rows: print("\n".join(r["revoked"] for r in rows)))
