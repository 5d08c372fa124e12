"""`shoal cluster gossip-keys` and `shoal cluster rotate-gossip-key`: the gossip keyring by
key id (a fingerprint; no command ever shows a key) and its rotation, step by step."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING

from node.cli import output
from node.cli.common import Refused, emit, needs_loop

if TYPE_CHECKING:
    from node.cli.lean_client import LeanClient


def register_cluster(csub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    csub.add_parser(
        "gossip-keys",
        parents=[common],
        help="list the gossip encryption keys by id: the primary one and the nodes holding each",
    ).set_defaults(handler=_list)
    rotate = csub.add_parser(
        "rotate-gossip-key",
        parents=[common],
        help="rotate the gossip encryption key without cutting any node off (prints each "
        "step and the new key's id)",
    )
    rotate.add_argument(
        "--grace",
        type=_seconds,
        default=5.0,
        help="seconds between every node sealing with the new key and the removal of the "
        "old ones (default 5)",
    )
    rotate.add_argument(
        "--wait",
        type=_seconds,
        default=30.0,
        help="seconds to wait for every live node at each step before giving up (default 30)",
    )
    rotate.set_defaults(handler=_rotate)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number of seconds, >= 0")
    return value


async def _list(args: argparse.Namespace, client: LeanClient) -> int:
    def render(ring: dict) -> None:
        output.table(
            ("KEY ID", "PRIMARY", "HELD BY", "SEALING WITH IT"),
            [
                (
                    k["id"]
                    + (" (from the cluster secret)" if k["derived_from_cluster_secret"] else ""),
                    "yes" if k["primary"] else "",
                    ", ".join(k["held_by"]) or "-",
                    ", ".join(k["primary_on"]) or "-",
                )
                for k in ring["keys"]
            ],
        )

    return emit(args, await client.get("/v1/cluster/gossip-keys"), render)


@needs_loop
async def _rotate(args: argparse.Namespace, client: LeanClient) -> int:
    body = {"grace": args.grace, "wait": args.wait}
    primary = ""
    async for line in client.post_lines("/v1/cluster/gossip-keys/rotate", body):
        if not line.strip():
            continue
        try:
            step = json.loads(line)
        except ValueError:
            raise Refused(f"gossip key rotation: the node answered {line[:200]!r}") from None
        if step.get("step") == "error":
            raise Refused(f"gossip key rotation stopped: {step.get('detail')}")
        if step.get("step") == "done":
            primary = step["key"]
        if args.output == "json":
            print(json.dumps(step, sort_keys=True), flush=True)
        else:
            print(f"{step['elapsed']:7.2f}s  {step['step']:<9} {step['key']}  {step['detail']}")
            sys.stdout.flush()
    if not primary:
        raise Refused("gossip key rotation: the node ended the answer before the last step")
    if args.output != "json":
        print(f"gossip key rotated: primary key {primary}")
    return 0
