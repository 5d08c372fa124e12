"""Aligned tables and detail views for the CLI.

Tables are plain aligned columns: the commands that print them are the ones run most, and
rich costs about a quarter of such a command's CPU time to import. rich draws the detail
views and the rollout progress, and is imported on first use: the node process parses the
same command line but never prints, and stays a few megabytes smaller without it."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


@cache
def console() -> Console:
    from rich.console import Console

    # Piped output is not cut to a terminal's width: scripts read whole columns.
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 400)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Columns two spaces apart, left-aligned, never wrapped; a bold header on a terminal."""
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [
        max([len(column), *(len(row[i]) for row in cells)]) for i, column in enumerate(columns)
    ]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=False)
        ).rstrip()

    header = line(columns)
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        header = f"\033[1m{header}\033[0m"
    print("\n".join([header, *map(line, cells)]))


def detail(data: Any) -> None:
    console().print_json(json.dumps(data, sort_keys=True))


def size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def cpus(millis: int) -> str:
    return f"{millis / 1000:g}"


def ago(ts: float) -> str:
    if not ts:
        return "-"
    seconds = max(0, time.time() - ts)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{int(seconds // length)}{unit} ago"
    return f"{int(seconds)}s ago"
