"""`shoal service rollback` and `shoal service status [--follow]`: a service's rollout with a
progress bar and its recent events, read from `GET /v1/services/{name}` and the SSE stream
`GET /v1/events?service=NAME`."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from node.cli import output
from node.cli.common import emit, needs_loop

if TYPE_CHECKING:
    from rich.table import Table

    from node.client import ShoalClient

# Events shown by `service status` (the most recent ones this node kept).
RECENT_EVENTS = 10
# Where following a rollout ends: it is over, or waits for someone (paused, or canaries to
# promote or roll back).
FINAL_STATES = ("completed", "paused", "canary", "rolled_back")


def register(ssub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    rollback = ssub.add_parser(
        "rollback", parents=[common], help="return a service to its previous spec (or --to-version)"
    )
    rollback.add_argument("name", metavar="SERVICE")
    rollback.add_argument(
        "--to-version",
        type=int,
        default=0,
        help="an earlier version to return to (the last 10 are kept)",
    )
    rollback.set_defaults(handler=_rollback)
    promote = ssub.add_parser(
        "promote", parents=[common], help="go on with an update waiting in its canary phase"
    )
    promote.add_argument("name", metavar="SERVICE")
    promote.set_defaults(handler=_promote)
    rebalance = ssub.add_parser(
        "rebalance", parents=[common], help="move tasks to spread a service over its nodes again"
    )
    rebalance.add_argument("name", metavar="SERVICE")
    rebalance.set_defaults(handler=_rebalance)
    status = ssub.add_parser(
        "status", parents=[common], help="a service's rollout: progress and recent events"
    )
    status.add_argument("name", metavar="SERVICE")
    status.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="stream the service's events until its rollout is over",
    )
    status.set_defaults(handler=_status)


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict]]:
    """(event type, data) per Server-Sent Event; comments and ids are skipped."""
    kind, data = "message", ""
    async for line in lines:
        if not line:
            if data:
                yield kind, json.loads(data)
            kind, data = "message", ""
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


def progress_line(rollout: dict | None) -> Table:
    """`[=====     ] 2/3 updated, 1 failed  updating` as one rich row."""
    from rich.progress_bar import ProgressBar  # rich only when something is printed
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    if rollout is None:
        grid.add_row("no rollout yet: the service runs the spec it was created with")
        return grid
    total = rollout["updated"] + rollout["failed"] + len(rollout["batch"]) + rollout["remaining"]
    counts = f"{rollout['updated']}/{total} updated"
    if rollout["failed"]:
        counts += f", {rollout['failed']} failed"
    grid.add_row(
        ProgressBar(total=max(total, 1), completed=rollout["updated"] if total else 1, width=30),
        counts,
        rollout["state"],
    )
    return grid


def autoscale_line(status: dict) -> str:
    """`autoscale 1..5 replicas on rps (target 20): 3 -> 4: why` from the autoscale answer."""
    policy, decision = status["policy"], status["decision"]
    head = (
        f"autoscale {policy['min']}..{policy['max']} replicas on {policy['metric']} "
        f"(target {policy['target']:g}): "
    )
    if decision["desired"] != decision["current"]:
        head += f"{decision['current']} -> {decision['desired']}: "
    return head + decision["reason"]


def render_status(service: dict, events: list[dict], autoscale: dict | None = None) -> None:
    rollout = service["rollout"]
    console = output.console()
    head = f"{service['name']}  version {service['version']}"
    if rollout:
        head += f"  {rollout['kind']} from version {rollout['from_version']}"
    console.print(head, style="bold")
    if autoscale:
        console.print(autoscale_line(autoscale))
    console.print(progress_line(rollout))
    if rollout:
        console.print(
            f"started {output.ago(rollout['started_at'])}, "
            f"last change {output.ago(rollout['updated_at'])}"
        )
        if rollout["reason"]:
            console.print(f"reason: {rollout['reason']}")
        console.print(rollout["message"])
    if events:
        console.print()
        output.table(
            ("WHEN", "EVENT", "MESSAGE"),
            ((output.ago(e["at"]), e["type"], e["message"]) for e in events),
        )


async def service_events(
    client: ShoalClient, name: str, since: int, follow: bool
) -> AsyncIterator[dict]:
    """A service's events after `since`; a stream the node ended (a client it dropped as too
    slow) just ends here."""
    params = {"service": name, "since": str(since), "follow": "1" if follow else "0"}
    async for kind, data in parse_sse(client.stream_lines("/v1/events", **params)):
        if kind != "dropped":
            yield data


async def _rollback(args, client: ShoalClient) -> int:
    body = {"to_version": args.to_version} if args.to_version else {}
    service = await client.post(f"/v1/services/{args.name}/rollback", body)
    return emit(
        args,
        service,
        lambda s: print(f"{s['name']}: {s['rollout']['message']} (as version {s['version']})"),
    )


async def _promote(args, client: ShoalClient) -> int:
    service = await client.post(f"/v1/services/{args.name}/promote")
    return emit(args, service, lambda s: print(f"{s['name']}: {s['rollout']['message']}"))


async def _rebalance(args, client: ShoalClient) -> int:
    service = await client.post(f"/v1/services/{args.name}/rebalance")
    return emit(
        args,
        service,
        lambda s: print(f"{s['name']}: rebalancing (one move at a time, each start-first)"),
    )


@needs_loop
async def _status(args, client: ShoalClient) -> int:
    service = await client.get(f"/v1/services/{args.name}")
    autoscale = (
        await client.get(f"/v1/services/{args.name}/autoscale")
        if service["spec"].get("autoscale")
        else None
    )
    kept = [e async for e in service_events(client, args.name, since=0, follow=False)]
    emit(
        args,
        {"service": service, "autoscale": autoscale, "events": kept[-RECENT_EVENTS:]},
        lambda d: render_status(d["service"], d["events"], d["autoscale"]),
    )
    if not args.follow or service["rollout"] is None or service["rollout"]["state"] in FINAL_STATES:
        return 0
    # From the last event seen, so nothing between the two requests is missed.
    since = kept[-1]["seq"] if kept else 0
    async for event in service_events(client, args.name, since=since, follow=True):
        if args.output == "json":
            print(json.dumps(event, sort_keys=True), flush=True)
        else:
            output.console().print(f"{event['type']:<16} {event['message']}")
        if event["type"] == "rollout":
            rollout = (await client.get(f"/v1/services/{args.name}"))["rollout"]
            if args.output != "json":
                output.console().print(progress_line(rollout))
            if rollout["state"] in FINAL_STATES:
                return 0
    return 0
