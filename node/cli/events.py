"""`shoal events`: the cluster's event stream in the terminal, as `docker events` shows the
engine's. It reads the node's SSE feed (`GET /v1/events`, node.api.events).

Without `--since` it prints what happens from now on; `--since T` first replays the events
the node keeps (its last 1,000) from time T; `--until T` ends the stream at T (at once when T
has passed). Ctrl-C ends it with exit status 130, as it ends `docker events`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from node.cli.common import Refused, needs_loop
from node.cli.rollout import parse_sse

if TYPE_CHECKING:
    from node.client import ShoalClient

# docker's `type` filter names the kind of object; Shoal's event types start with it.
KINDS = {"service": ("service.", "rollout", "job."), "task": ("task.",), "node": ("node.",)}
FILTER_KEYS = ("type", "event", "name", "service", "node")


def point_in_time(text: str, now: float | None = None) -> float:
    """Seconds since the epoch from what docker accepts: a Unix timestamp (`1733551200`),
    an RFC 3339 date or time (`2026-12-07T06:00:00Z`, UTC when no offset is given), or a
    duration before now (`10m`, `1h30m`)."""
    now = time.time() if now is None else now
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    from consensus.units import parse_duration  # only a relative time needs it
    from consensus.wire import WireError

    try:
        return now - parse_duration(text, "time")
    except WireError:
        raise argparse.ArgumentTypeError(
            f"cannot read {text!r} as a time: use a Unix timestamp, an RFC 3339 time "
            f"(2026-12-07T06:00:00Z) or a duration before now (10m, 1h30m)"
        ) from None


def filter_arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or key not in FILTER_KEYS or not value:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}, got {text!r}"
        )
    if key == "type" and value not in KINDS:
        raise argparse.ArgumentTypeError(f"type is one of {', '.join(KINDS)}, not {value!r}")
    return key, value


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    events = sub.add_parser(
        "events", parents=[common], help="stream the cluster's events (Ctrl-C ends it)"
    )
    events.add_argument(
        "--since",
        type=point_in_time,
        metavar="TIME",
        help="first replay the kept events from TIME: a Unix timestamp, an "
        "RFC 3339 time or a duration before now (10m)",
    )
    events.add_argument(
        "--until",
        type=point_in_time,
        metavar="TIME",
        help="end the stream at TIME (as --since reads it)",
    )
    events.add_argument(
        "-f",
        "--filter",
        type=filter_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep events matching: type=service|task|node, event=TYPE "
        "(task.state ...), name (a service or node), service, node; "
        "keys are ANDed, a key's values ORed",
    )
    events.add_argument(
        "--format",
        choices=("text", "json"),
        help="text (default), or json: one object per line (as -o json)",
    )
    events.set_defaults(handler=_events)


def _matches(event: dict, key: str, value: str) -> bool:
    if key == "type":
        return event["type"].startswith(KINDS[value])
    if key == "event":
        return event["type"] == value
    if key == "name":
        return value in (event["service"], event["node"])
    return event[key] == value


def selected(event: dict, filters: list[tuple[str, str]]) -> bool:
    wanted: dict[str, set[str]] = {}
    for key, value in filters:
        wanted.setdefault(key, set()).add(value)
    return all(any(_matches(event, key, v) for v in values) for key, values in wanted.items())


def line(event: dict, as_json: bool) -> str:
    if as_json:
        return json.dumps(event, sort_keys=True, separators=(",", ":"))
    at = datetime.fromtimestamp(event["at"], UTC).isoformat(timespec="milliseconds")
    return f"{at.replace('+00:00', 'Z')} {event['type']} {event['message']}"


async def _feed(
    client: ShoalClient, since: int, follow: bool, service: str | None
) -> AsyncIterator[dict]:
    params = {"since": str(since), "follow": "1" if follow else "0"}
    if service:
        params["service"] = service
    async for kind, data in parse_sse(client.stream_lines("/v1/events", **params)):
        if kind == "dropped":  # the node ends the stream of a client too slow to read
            raise Refused("the node ended the stream: this reader fell too far behind")
        yield data


@needs_loop
async def _events(args: argparse.Namespace, client: ShoalClient) -> int:
    as_json = args.format == "json" or (args.format is None and args.output == "json")
    services = {v for k, v in args.filter if k == "service"}
    service = next(iter(services)) if len(services) == 1 else None
    until = args.until
    follow = until is None or until > time.time()
    if args.since is None:
        # From now: skip what the node has kept, starting after the last event it holds.
        kept = [e async for e in _feed(client, 0, False, service)]
        start = kept[-1]["seq"] if kept else 0
    else:
        start = 0

    async def show() -> None:
        async for event in _feed(client, start, follow, service):
            if args.since is not None and event["at"] < args.since:
                continue
            if until is not None and event["at"] > until:
                if follow:
                    return
                continue
            if selected(event, args.filter):
                print(line(event, as_json), flush=True)

    import asyncio

    try:
        async with asyncio.timeout(None if until is None or not follow else until - time.time()):
            await show()
    except TimeoutError:
        pass  # --until came
    return 0
