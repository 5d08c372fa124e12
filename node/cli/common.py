"""What every command group shares: the CLI's errors and exit codes, KEY=VALUE parsing,
printing an answer as JSON or as the group's table, and reading a file argument."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    pass


class Refused(Exception):
    """The CLI found, before changing anything, that the request cannot be done as a whole."""


def kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def labels(text: str) -> dict[str, str]:
    return dict(kv(item) for item in text.split(",") if item)


def default_data_dir() -> str:
    return "/var/lib/shoal" if os.geteuid() == 0 else os.path.expanduser("~/.shoal")


class LazyHelp:
    """A flag's help made only when argparse prints help, from what a command that does not
    print it need not import (the spec's or a node's defaults)."""

    def __init__(self, render: Callable[[], str]) -> None:
        self._render = render

    def __str__(self) -> str:
        return self._render()

    def __bool__(self) -> bool:
        return True

    def __mod__(self, params: dict) -> str:  # argparse's help expansion
        return str(self) % params

    def __getattr__(self, name: str) -> Any:  # strip(), splitlines(), ... of the text
        return getattr(str(self), name)


def needs_loop(handler: Callable) -> Callable:
    """Mark a command whose handler follows streams, reads files in a thread or does several
    things at once: it runs in an asyncio loop. Every other command asks and prints, and
    runs without one (see node.cli.lean_client), which is most of what it would cost."""
    handler.needs_loop = True  # type: ignore[attr-defined]
    return handler


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any], None]) -> int:
    if args.output == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        render(data)
    return 0


async def read_file(path: str) -> bytes:
    """The bytes of a file argument; `-` reads standard input."""
    import asyncio

    if path == "-":
        return await asyncio.to_thread(sys.stdin.buffer.read)
    try:
        return await asyncio.to_thread(Path(path).read_bytes)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


# How long one blocking query may wait on the server: below the CLI's 10 s request timeout.
FOLLOW_WAIT = "8s"


def add_follow_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help=f"keep showing {what}, shown again whenever it changes (Ctrl-C ends)",
    )


async def follow(
    args: argparse.Namespace, client: Any, path: str, render: Callable[[Any], None]
) -> int:
    """Show `path`, then show it again each time it changes, until interrupted. Each wait is
    one blocking query (`?index=N&wait=...`): the node answers when its state has applied
    more than N commands, and the listing is shown again only when what it holds changed."""
    shown: Any = None
    body, index = await client.get_at_index(path)
    while True:
        if body != shown:
            if shown is not None and sys.stdout.isatty():
                print("\033[H\033[2J", end="")  # redrawn in place, as `watch` does
            elif shown is not None:
                print()  # a pipe gets one listing after another
            emit(args, body, render)
            sys.stdout.flush()
            shown = body
        body, index = await client.get_at_index(path, index=index, wait=FOLLOW_WAIT)
