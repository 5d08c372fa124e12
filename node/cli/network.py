"""`shoal network create|ls|inspect|rotate-key|rm`: overlay networks (see the README's Overlay networks)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from node.cli import output
from node.cli.common import emit, labels

if TYPE_CHECKING:
    from node.client import ShoalClient


def _render_list(rows: list[dict]) -> None:
    output.table(
        ("NETWORK", "SUBNET", "VNI", "NODES", "SERVICES"),
        ((r["name"], r["subnet"], r["vni"], len(r["leases"]), len(r["vips"])) for r in rows),
    )


def _render_one(network: dict) -> None:
    print(json.dumps(network, indent=2, sort_keys=True))


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("network", help="create, list, inspect and remove overlay networks")
    nsub = group.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = nsub.add_parser("create", parents=[common], help="make an overlay network")
    create.add_argument("name")
    create.add_argument(
        "--subnet", help="CIDR, /22 or larger (default: the next free /20 of 10.200.0.0/13)"
    )
    create.add_argument("--internal", action="store_true", help="no way out of the network")
    create.add_argument("--attachable", action="store_true")
    create.add_argument(
        "--encrypted",
        action="store_true",
        help="VXLAN between nodes in IPsec ESP (needs ESP and AES-GCM in every node's kernel)",
    )
    create.add_argument("--label", dest="labels", type=labels, default={}, help="k=v,k2=v2")
    create.set_defaults(handler=_create)
    nsub.add_parser("ls", parents=[common], help="list networks").set_defaults(handler=_ls)
    inspect = nsub.add_parser(
        "inspect", parents=[common], help="a network, its leases, VIPs and services"
    )
    inspect.add_argument("name")
    inspect.set_defaults(handler=_inspect)
    rotate = nsub.add_parser(
        "rotate-key", parents=[common], help="move an encrypted network to new keys"
    )
    rotate.add_argument("name")
    rotate.set_defaults(handler=_rotate_key)
    rm = nsub.add_parser("rm", parents=[common], help="remove a network no service uses")
    rm.add_argument("name")
    rm.set_defaults(handler=_rm)


async def _create(args: argparse.Namespace, client: ShoalClient) -> int:
    body = {
        "name": args.name,
        "internal": args.internal,
        "attachable": args.attachable,
        "labels": args.labels,
        "encrypted": args.encrypted,
        **({"subnet": args.subnet} if args.subnet else {}),
    }
    return emit(args, await client.post("/v1/networks", body), _render_one)


async def _ls(args: argparse.Namespace, client: ShoalClient) -> int:
    return emit(args, await client.get("/v1/networks"), _render_list)


async def _inspect(args: argparse.Namespace, client: ShoalClient) -> int:
    return emit(args, await client.get(f"/v1/networks/{args.name}"), _render_one)


async def _rm(args: argparse.Namespace, client: ShoalClient) -> int:
    return emit(
        args,
        await client.delete(f"/v1/networks/{args.name}"),
        lambda answer: print(answer["removed"]),
    )


async def _rotate_key(args: argparse.Namespace, client: ShoalClient) -> int:
    return emit(
        args,
        await client.post(f"/v1/networks/{args.name}/rotate-key", {}),
        lambda answer: print(f"{answer['name']}: key epoch {answer['key_epoch']}"),
    )
