"""The `shoal` command line: starts nodes and talks to any node's HTTP API.

Exit codes: 0 success; 1 the cluster refused or failed the request; 2 bad arguments, a
malformed request (HTTP 400/422) or an unreachable API, with one clear line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from node.cli.common import EXIT_FAILED, EXIT_USAGE, Refused, UsageError, default_data_dir
from node.cli.lean_client import UNIX_PREFIX, ApiError, LeanClient, Unreachable, run_loop_free
from node.local_socket import socket_path
from node.pki.store import ca_path

DEFAULT_ADDR = "https://127.0.0.1:7420"


def _add_api_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every API command takes, before the command (`shoal --addr A node ls`, as
    `docker -H` and `kubectl --server`) or after it. Only the top-level parser holds their
    defaults: a command's own copy sets a value only when given, so it cannot undo one given
    before the command."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--addr",
        default=default(None),
        help="API address of any node, HOST:PORT (HTTPS), https://HOST:PORT or "
        "unix:PATH (env SHOAL_ADDR; default: the socket of the node on this "
        f"machine, else {DEFAULT_ADDR})",
    )
    parser.add_argument(
        "--data-dir",
        default=default(None),
        help="talk to the node with this data dir through its socket (env SHOAL_DATA_DIR)",
    )
    parser.add_argument(
        "--token",
        default=default(os.environ.get("SHOAL_TOKEN")),
        help="API token, needed over TCP (env SHOAL_TOKEN)",
    )
    parser.add_argument(
        "--ca",
        default=default(os.environ.get("SHOAL_CA")),
        help="the cluster's CA certificates (PEM) to verify a node over TCP "
        "(env SHOAL_CA; default: the node's on this machine, "
        "DATA_DIR/tls/ca.pem)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=default("table"),
        help="table (default) or json",
    )
    parser.add_argument(
        "--stale",
        action="store_true",
        default=default(False),
        help="read the asked node's copy of the state, which may be behind, "
        "instead of a linearizable read (works without a leader)",
    )


# The options above that take a value: skipped when looking for the command group in argv.
_VALUED_OPTIONS = ("--addr", "--data-dir", "--token", "--ca", "-o", "--output")


def command_group(argv: list[str]) -> str | None:
    """The command group argv names (`node` in `shoal --addr A node ls`), if any."""
    words = iter(argv)
    for word in words:
        if word in _VALUED_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


# Subcommands live beside their handlers, a module per command group, in help order.
_MODULES = (
    "node",
    "service",
    "job",
    "cron",
    "apply",
    "stack",
    "volume",
    "secret",
    "network",
    "token",
    "events",
    "completion",
)
_GROUP_MODULE = {
    "node": "node",
    "cluster": "node",
    "dev": "node",
    "service": "service",
    "apply": "apply",
    "stack": "stack",
    "volume": "volume",
    "secret": "secret",
    "config": "secret",
    "network": "network",
    "job": "job",
    "cron": "cron",
    "token": "token",
    "events": "events",
    "completion": "completion",
}


class _Parser(argparse.ArgumentParser):
    """No abbreviated flags: `--imag x` must be an error, not a silent `--image x`. Every
    subparser is of this class too (argparse makes them of their parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`'s command group alone when it names one, else for all: `shoal
    node start` runs for months, and need not hold every other command (1.5 MB)."""
    group = command_group(argv or [])
    modules = (_GROUP_MODULE[group],) if group in _GROUP_MODULE else _MODULES
    parser = _Parser(prog="shoal", description="Shoal: a peer-to-peer container orchestrator.")
    _add_api_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    common = _Parser(add_help=False)
    _add_api_options(common, defaults=False)
    for name in modules:
        importlib.import_module(f"node.cli.{name}").register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        if getattr(args, "local", None):
            return args.local(args)
        if not getattr(args.handler, "needs_loop", False):
            return run_loop_free(args.handler(args, _client(args, blocking=True)))
        import asyncio

        return asyncio.run(_call(args))
    except UsageError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Unreachable as exc:
        print(
            f"shoal: {exc} (is a node running there? `shoal dev` starts a local cluster; "
            f"--addr or SHOAL_ADDR points at another node)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except ApiError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.status in (400, 422) else EXIT_FAILED
    except Refused as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`shoal events | head`): end quietly, as other CLIs do, and
        # keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by the pipe


def api_address(addr: str | None, data_dir: str | None) -> str:
    """Flags first, then the environment, then the socket of a node on this machine (its
    default data dir), then the default TCP address."""
    if addr:
        return addr
    if data_dir:
        return UNIX_PREFIX + socket_path(data_dir)
    if os.environ.get("SHOAL_ADDR"):
        return os.environ["SHOAL_ADDR"]
    local = socket_path(os.environ.get("SHOAL_DATA_DIR") or default_data_dir())
    if os.environ.get("SHOAL_DATA_DIR") or os.path.exists(local):
        return UNIX_PREFIX + local
    return DEFAULT_ADDR


def ca_file(ca: str | None, data_dir: str | None) -> str | None:
    """The CA bundle to verify a node over TCP with: the flag, else that of the node on this
    machine (its data dir, else the default one) when there is one, else None (the system's
    trust store, as for a TLS-terminating proxy)."""
    if ca:
        return ca
    local = ca_path(data_dir or os.environ.get("SHOAL_DATA_DIR") or default_data_dir())
    return local if os.path.exists(local) else None


def _client(args: argparse.Namespace, *, blocking: bool) -> LeanClient:
    return LeanClient(
        api_address(args.addr, args.data_dir),
        args.token,
        stale=getattr(args, "stale", False),
        blocking=blocking,
        ca_file=ca_file(args.ca, args.data_dir),
    )


async def _call(args: argparse.Namespace) -> int:
    async with _client(args, blocking=False) as client:
        return await args.handler(args, client)


if __name__ == "__main__":
    sys.exit(main())
