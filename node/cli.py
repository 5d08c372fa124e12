"""The `shoal` command line: starts nodes and talks to any node's HTTP API.

Exit codes: 0 success; 1 the cluster refused or failed the request; 2 bad arguments, a
malformed request (HTTP 400/422) or an unreachable API, with one clear line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from typing import Any, Awaitable, Callable, Optional

from node.client import ApiError, ShoalClient, Unreachable
from node.security import TokenError

DEFAULT_ADDR = "http://127.0.0.1:7420"
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace, ShoalClient], Awaitable[int]]


class UsageError(Exception):
    pass


class Refused(Exception):
    """The CLI found, before changing anything, that the request cannot be done as a whole."""


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _labels(text: str) -> dict[str, str]:
    return dict(_kv(item) for item in text.split(",") if item)


def _api_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--addr", default=os.environ.get("SHOAL_ADDR", DEFAULT_ADDR),
                        help="API address of any node (env SHOAL_ADDR; default %(default)s)")
    common.add_argument("--token", default=os.environ.get("SHOAL_TOKEN"),
                        help="API token, needed from outside loopback (env SHOAL_TOKEN)")
    common.add_argument("-o", "--output", choices=("table", "json"), default="table")
    common.add_argument("--stale", action="store_true",
                        help="read the asked node's copy of the state, which may be behind, "
                             "instead of a linearizable read (works without a leader)")
    return common


# Subcommands live beside their handlers, a module per command group, in help order.
_MODULES = ("cli_node", "cli_service", "cli_apply", "cli_volume", "cli_secret")
_GROUP_MODULE = {"node": "cli_node", "cluster": "cli_node", "dev": "cli_node",
                 "service": "cli_service", "apply": "cli_apply", "volume": "cli_volume",
                 "secret": "cli_secret", "config": "cli_secret"}


def build_parser(argv: Optional[list[str]] = None) -> argparse.ArgumentParser:
    """The parser for `argv`'s command group alone when it names one, else for all: `shoal
    node start` runs for months, and need not hold every other command (1.5 MB)."""
    group = next((a for a in argv or () if not a.startswith("-")), None)
    modules = (_GROUP_MODULE[group],) if group in _GROUP_MODULE else _MODULES
    parser = argparse.ArgumentParser(prog="shoal", description="Shoal: a peer-to-peer "
                                     "container orchestrator.")
    sub = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    common = _api_options()
    for name in modules:
        importlib.import_module(f"node.{name}").register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        if getattr(args, "local", None):
            return args.local(args)
        return asyncio.run(_call(args))
    except UsageError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TokenError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Unreachable as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.status in (400, 422) else EXIT_FAILED
    except Refused as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


async def _call(args: argparse.Namespace) -> int:
    async with ShoalClient(args.addr, args.token, stale=getattr(args, "stale", False)) as client:
        return await args.handler(args, client)


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any], None]) -> int:
    if args.output == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        render(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
