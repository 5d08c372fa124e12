"""`shoal node ...`, `shoal cluster ...` and `shoal dev`."""

from __future__ import annotations

import argparse
import functools
import os
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from node.cli import gossip_keys, output, snapshot, tasks
from node.cli.common import (
    LazyHelp,
    UsageError,
    add_follow_flag,
    default_data_dir,
    emit,
    follow,
    kv,
    labels,
)

if TYPE_CHECKING:  # a node's modules load only in `node start`
    from node.client import ShoalClient
    from node.config import NodeConfig


@functools.cache
def _defaults() -> dict:
    """NodeConfig's defaults, which the help of `node start` names: read when help is printed
    or a dev cluster starts, not by every `node` command."""
    import dataclasses

    from node.config import NodeConfig

    return {f.name: f.default for f in dataclasses.fields(NodeConfig)}


def _default_help(text: str, key: str, more: str = "") -> LazyHelp:
    return LazyHelp(lambda: f"{text} (default {_defaults()[key]:g}{more})")


# How a node writes its log (node.log_format).
LOG_FORMATS = ("text", "json")
# How every `shoal node` command names a node.
NODE_REF = "the node's id, its name, or any prefix of its id that no other node's id starts with"


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    node = sub.add_parser("node", help="start a node, list and manage nodes")
    nsub = node.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = nsub.add_parser("start", help="run a node in the foreground")
    start.add_argument("--name", help="node name (default: the host name)")
    start.add_argument(
        "--data-dir", default=None, help=f"state directory (default {default_data_dir()})"
    )
    start.add_argument(
        "--advertise", help="address other nodes reach this one on (default 127.0.0.1)"
    )
    start.add_argument(
        "--publish-address", help="address task ports are published on (default: --advertise)"
    )
    start.add_argument(
        "--ingress-address", help="address published service ports listen on (default: --advertise)"
    )
    start.add_argument(
        "--lb-dataplane",
        choices=("auto", "nft", "proxy"),
        help="routing mesh data plane: asyncio proxy (default), nftables DNAT "
        "(root), or auto (nftables where it works)",
    )
    start.add_argument(
        "--lb-workers",
        type=_lb_workers,
        help="run the routing mesh's proxy in N worker processes sharing its ports "
        "(SO_REUSEPORT; one per core, e.g. $(nproc)); 0 (default) runs it in the node",
    )
    for port, what in (
        ("api", "HTTP API, tcp"),
        ("raft", "Raft, tcp"),
        ("gossip", "gossip, udp and tcp"),
        ("dns", "DNS, udp"),
    ):
        start.add_argument(f"--{port}-port", type=int, help=_default_help(what, f"{port}_port"))
    start.add_argument(
        "--overlay",
        action="store_true",
        default=None,
        help="take part in overlay networks (root, Docker runtime, one node per network namespace)",
    )
    start.add_argument(
        "--vxlan-port", type=int, help="UDP port of the overlay's VXLAN (default 4789)"
    )
    start.add_argument(
        "--overlay-cidr",
        type=_overlay_cidr,
        metavar="CIDR",
        help="where overlay networks take their subnets from, set when the "
        "cluster is made (default 10.200.0.0/13)",
    )
    start.add_argument(
        "--dns-upstream",
        type=_addresses,
        metavar="ADDR[,ADDR]",
        help="where container DNS forwards other names (default: /etc/resolv.conf's)",
    )
    start.add_argument("--join", metavar="HOST:PORT", help="API address of any cluster node")
    start.add_argument("--token", help="join token (`shoal cluster token` on a member)")
    start.add_argument("--labels", type=labels, help="k=v,k2=v2 (applied when the node joins)")
    start.add_argument(
        "--runtime",
        choices=("auto", "docker", "process"),
        help=LazyHelp(
            lambda: (
                "run tasks as containers or processes (default "
                f"{_defaults()['runtime']}: Docker when an engine answers)"
            )
        ),
    )
    start.add_argument(
        "--image-pull",
        choices=("missing", "never"),
        help="pull images tasks need when missing (default), or never",
    )
    start.add_argument(
        "--voter-grace",
        type=float,
        help="seconds a voter may be down before it is replaced (default 60)",
    )
    start.add_argument(
        "--metrics-interval",
        type=float,
        help="seconds between this node's load reports for autoscaling (default 5)",
    )
    start.add_argument(
        "--snapshot-entries",
        type=int,
        metavar="N",
        help=_default_help(
            "compact the Raft log into a snapshot past N entries", "snapshot_entries"
        ),
    )
    start.add_argument(
        "--snapshot-interval",
        type=float,
        metavar="SECONDS",
        help=_default_help("at most one Raft snapshot per this many seconds", "snapshot_interval"),
    )
    start.add_argument(
        "--snapshot-keep",
        type=int,
        metavar="N",
        help="also write a cluster snapshot into DATA_DIR/snapshots every "
        "--snapshot-interval, keeping the newest N (default 0: none)",
    )
    start.add_argument(
        "--restore",
        metavar="FILE",
        help="on an empty data dir: become the only voter of a new cluster "
        "holding this snapshot (with --recovery-key: the old cluster's key)",
    )
    start.add_argument(
        "--recovery-key",
        metavar="KEY",
        default=os.environ.get("SHOAL_RECOVERY_KEY"),
        help="with --restore: the old cluster's recovery key (`shoal cluster recovery-key`; "
        "default: $SHOAL_RECOVERY_KEY, which keeps it out of the process list)",
    )
    start.add_argument(
        "--force-new-cluster",
        action="store_true",
        help="on a surviving voter whose quorum is lost for good: become the "
        "only voter, keeping this node's state (writes it lacks are lost)",
    )
    start.add_argument(
        "--cpus",
        type=_cpus,
        help="CPU capacity to offer: cores (2, 0.5) or millicores (500m) (default: all)",
    )
    start.add_argument(
        "--memory",
        type=_memory,
        help="memory capacity to offer: bytes or a size (512m, 8g) (default: all)",
    )
    start.add_argument(
        "--api-host",
        action="append",
        metavar="NAME",
        help="a DNS name clients reach the API by (repeatable; IP addresses, "
        "localhost and the machine's name are always accepted)",
    )
    start.add_argument(
        "--task-user",
        metavar="USER",
        help="user process-runtime tasks run as (default: nobody when the node "
        "runs as root, else the node's own user)",
    )
    start.add_argument(
        "--host-binds",
        choices=("yes", "no"),
        help="whether tasks may bind-mount host paths (default yes)",
    )
    # Seconds this node's certificates are valid: only to watch renewal happen in tests.
    start.add_argument("--cert-lifetime", type=float, help=argparse.SUPPRESS)
    start.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    start.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text lines (default) or one JSON object per line (time, level, "
        "logger, message, exc) for a log collector",
    )
    start.set_defaults(local=_start)

    ls = nsub.add_parser("ls", parents=[common], help="list nodes")
    add_follow_flag(ls, "the nodes")
    ls.set_defaults(handler=_ls)
    inspect = nsub.add_parser("inspect", parents=[common], help="show one node")
    inspect.add_argument("ref", metavar="NODE", help=NODE_REF)
    inspect.set_defaults(handler=_inspect)
    ps = nsub.add_parser(
        "ps", parents=[common], help="tasks on a node (default: the node the CLI talks to)"
    )
    ps.add_argument("ref", metavar="NODE", nargs="?", help=NODE_REF)
    tasks.add_listing_flags(ps)
    ps.set_defaults(handler=_ps)
    update = nsub.add_parser("update", parents=[common], help="change labels or availability")
    update.add_argument("ref", metavar="NODE", help=NODE_REF)
    update.add_argument("--label-add", type=kv, action="append", default=[], metavar="K=V")
    update.add_argument("--label-rm", action="append", default=[], metavar="K")
    update.add_argument("--availability", choices=("active", "pause", "drain"))
    update.set_defaults(handler=_update)
    for verb in ("promote", "demote"):
        p = nsub.add_parser(verb, parents=[common], help=f"{verb} a node (Raft voter set)")
        p.add_argument("ref", metavar="NODE", help=NODE_REF)
        p.set_defaults(handler=_role_change, verb=verb)
    rm = nsub.add_parser("rm", parents=[common], help="remove a node from the cluster")
    rm.add_argument("ref", metavar="NODE", help=NODE_REF)
    rm.add_argument("--force", action="store_true", help="remove even if the node is ready")
    rm.set_defaults(handler=_rm)
    snapshot.register_node(nsub, common)

    cluster = sub.add_parser("cluster", help="cluster status and join token")
    csub = cluster.add_subparsers(dest="command", required=True, metavar="COMMAND")
    csub.add_parser("status", parents=[common], help="leader, term, voters").set_defaults(
        handler=_status
    )
    csub.add_parser("token", parents=[common], help="print the join token").set_defaults(
        handler=_token
    )
    csub.add_parser(
        "recovery-key",
        parents=[common],
        help="print the key a restore of this cluster's snapshots needs (keep it apart "
        "from the snapshots)",
    ).set_defaults(handler=_recovery_key)
    snapshot.register_cluster(csub, common)
    gossip_keys.register_cluster(csub, common)
    csub.add_parser(
        "rotate-token",
        parents=[common],
        help="make a new join token; the old one is refused from then on",
    ).set_defaults(handler=_rotate_token)
    csub.add_parser(
        "rotate-ca",
        parents=[common],
        help="make a new root CA; nodes move to certificates of it by themselves "
        "(prints the new join token)",
    ).set_defaults(handler=_rotate_ca)

    dev = sub.add_parser("dev", help="run a local cluster of N nodes in the foreground")
    dev.add_argument("--nodes", type=int, default=3, help="how many (default 3)")
    dev.add_argument("--data-dir", default=None, help="base directory (default ./.shoal-dev)")
    dev.add_argument(
        "--api-port", type=int, help=_default_help("every node's API port", "api_port")
    )
    dev.add_argument(
        "--runtime",
        choices=("auto", "docker", "process"),
        default="process",
        help="how the nodes run tasks (default: plain processes, which work everywhere)",
    )
    dev.add_argument(
        "--demo-port",
        type=int,
        default=8080,
        help="where the demo service is published on every node (default %(default)s; 0: no demo)",
    )
    dev.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="the nodes' log format (as `node start --log-format`)",
    )
    dev.set_defaults(local=_dev)


# -- node start -------------------------------------------------------------------------
def _addresses(text: str) -> tuple[str, ...]:
    import ipaddress

    found = tuple(part.strip() for part in text.split(",") if part.strip())
    for address in found:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{address!r} is not an IP address") from None
    return found


MAX_LB_WORKERS = 256


def _lb_workers(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_LB_WORKERS:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_LB_WORKERS}, not {text!r}")
    return int(text)


def _overlay_cidr(text: str) -> str:
    from consensus import ipam

    try:
        return ipam.check_cluster_cidr(text)
    except ipam.IpamError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cpus(text: str) -> int:
    """Millicores, read as a reservation's cpu is."""
    from consensus.units import parse_cpu  # here: only a node start reads it

    return _amount(parse_cpu, text, "--cpus")


def _memory(text: str) -> int:
    """Bytes, read as a reservation's memory is."""
    from consensus.units import parse_memory

    return _amount(parse_memory, text, "--memory")


def _amount(parse, text: str, flag: str) -> int:
    from consensus.wire import WireError

    try:
        return parse(text, flag)
    except WireError as exc:
        raise argparse.ArgumentTypeError(exc.reason) from None


def _start(args: argparse.Namespace) -> int:
    import dataclasses

    from node import config as cfg
    from node import datadir
    from node.config import NodeConfig
    from node.log_format import configure

    configure(args.log_level, args.log_format)
    data_dir = os.path.abspath(args.data_dir or default_data_dir())
    snapshot.check_recovery_flags(args)
    problem = None if args.restore else datadir.start_problem(data_dir, args.join and args.token)
    if problem:
        raise UsageError(f"will not start: {problem}")
    stored = cfg.load(data_dir)
    base = stored.config if stored else NodeConfig(name=socket.gethostname(), data_dir=data_dir)
    overrides = {
        "name": args.name,
        "advertise": args.advertise,
        "publish_address": args.publish_address,
        "ingress_address": args.ingress_address,
        "lb_dataplane": args.lb_dataplane,
        "lb_workers": args.lb_workers,
        "api_port": args.api_port,
        "raft_port": args.raft_port,
        "gossip_port": args.gossip_port,
        "dns_port": args.dns_port,
        "labels": args.labels,
        "runtime": args.runtime,
        "image_pull": args.image_pull,
        "voter_grace": args.voter_grace,
        "metrics_interval": args.metrics_interval,
        "snapshot_entries": args.snapshot_entries,
        "snapshot_interval": args.snapshot_interval,
        "snapshot_keep": args.snapshot_keep,
        "overlay": args.overlay,
        "vxlan_port": args.vxlan_port,
        "dns_upstreams": args.dns_upstream,
        "overlay_cidr": args.overlay_cidr,
        "api_hosts": tuple(args.api_host) if args.api_host else None,
        "task_user": args.task_user,
        "host_binds": None if args.host_binds is None else args.host_binds == "yes",
        "cpus_millis": args.cpus or None,
        "memory_bytes": args.memory,
        "cert_lifetime": args.cert_lifetime,
    }
    if args.metrics_interval is not None and not args.metrics_interval > 0:
        raise UsageError(
            f"--metrics-interval must be a positive number of seconds, "
            f"not {args.metrics_interval:g}"
        )
    if args.snapshot_entries is not None and args.snapshot_entries < 100:
        raise UsageError(f"--snapshot-entries must be at least 100, not {args.snapshot_entries}")
    if args.snapshot_keep is not None and not 0 <= args.snapshot_keep <= 1000:
        raise UsageError(f"--snapshot-keep must be between 0 and 1000, not {args.snapshot_keep}")
    if args.snapshot_interval is not None and not args.snapshot_interval > 0:
        raise UsageError(
            f"--snapshot-interval must be a positive number of seconds, "
            f"not {args.snapshot_interval:g}"
        )
    config = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if config.overlay and config.runtime == "process":
        raise UsageError("--overlay needs the Docker runtime (--runtime docker or auto)")
    if args.join and not args.token:
        raise UsageError("--join needs --token (run `shoal cluster token` on a member)")
    if stored and stored.identity and args.join:
        print(
            f"shoal: {data_dir} already belongs to cluster {stored.identity.cluster_id}; "
            f"ignoring --join",
            file=sys.stderr,
        )
    if args.restore or args.force_new_cluster:
        stored = snapshot.recover(args, stored, config)
        config = stored.config
        args.join = None
    node_id = stored.identity.node_id if stored and stored.identity else cfg.new_node_id()
    return _run_node(config, node_id, args.join, args.token)


def _run_node(config: NodeConfig, node_id: str, join: str | None, token: str | None) -> int:
    import asyncio
    import logging

    import node

    node.import_aiohttp_for_a_node()  # first, before anything imports aiohttp
    from node import config as cfg
    from node.client import ApiError, Unreachable
    from node.join import IncompatibleCluster
    from node.pki.store import NoCertificate
    from node.ports import port_taken
    from node.runtime.select import RuntimeUnavailable, select_driver
    from node.security import TokenError
    from node.server import ShoalNode

    # Before anything is written: a node that cannot serve its API must not have joined or
    # made a cluster identity that a later start would reuse.
    taken = port_taken(config.advertise, config.api_port)
    if taken:
        print(f"shoal: {taken} (--api-port picks another)", file=sys.stderr)
        return 2
    # Files the node creates (Raft journal and dump, task logs, records) are its own alone;
    # tasks get the usual 022 back (see the process driver).
    os.umask(0o077)
    cfg.secure_data_dir(config.data_dir)

    def driver_for(node_id: str):
        return select_driver(
            config.runtime,
            config.data_dir,
            node_id=node_id,
            pull_images=config.image_pull != "never",
            task_user=config.task_user,
            host_binds=config.host_binds,
        )

    async def run() -> int:
        try:
            driver = await driver_for(node_id)
        except (RuntimeUnavailable, ValueError) as exc:  # a runtime this machine lacks
            print(f"shoal: runtime {config.runtime}: {exc}", file=sys.stderr)
            return 2
        fingerprint = await driver.fingerprint()
        try:
            stored = await ShoalNode.prepare(config, node_id, fingerprint, join, token)
        except ApiError as exc:
            await driver.aclose()
            print(f"shoal: join refused by {join}: {exc.message}", file=sys.stderr)
            return 1
        except (Unreachable, TokenError, NoCertificate, IncompatibleCluster) as exc:
            await driver.aclose()
            print(f"shoal: {exc}", file=sys.stderr)
            return 2
        if stored.identity.node_id != node_id:
            # The cluster knew this machine under that id (a rejoin after a restore): its
            # tasks are that node's, and the driver must find them by it.
            await driver.aclose()
            driver = await driver_for(stored.identity.node_id)
        if not join and stored.identity and not os.environ.get("SHOAL_QUIET"):
            token_file = os.path.join(config.data_dir, cfg.TOKEN_FILE)
            with open(token_file) as f:
                print(f"join token: {f.read().strip()}\n  (saved in {token_file})", file=sys.stderr)
        try:
            reason = await ShoalNode(stored, driver, fingerprint).run()
        except IncompatibleCluster as exc:
            await driver.aclose()
            print(f"shoal: {exc}", file=sys.stderr)
            return 2
        logging.getLogger("shoal").info("node stopped: %s", reason)
        return 0

    _use_uvloop()
    return asyncio.run(run())


def _use_uvloop() -> None:
    import asyncio

    try:
        import uvloop
    except ImportError:  # uvloop is optional: the stock loop works everywhere
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# -- API commands ------------------------------------------------------------------------
def _render_nodes(rows: list[dict]) -> None:
    output.table(
        (
            "ID",
            "NAME",
            "ADDRESS",
            "ROLE",
            "STATUS",
            "AVAILABILITY",
            "CPUS",
            "MEMORY",
            "VERSION",
            "LABELS",
        ),
        (
            (
                n["id"],
                n["name"] + (" *" if n.get("leader") else ""),
                n["address"],
                n["role"],
                n["status"],
                n["availability"],
                output.cpus(n["resources"]["cpu_millis"]),
                output.size(n["resources"]["memory_bytes"]),
                _release(n),
                ",".join(f"{k}={v}" for k, v in sorted(n["labels"].items())),
            )
            for n in rows
        ),
    )


def _release(n: dict) -> str:
    """A node's release and protocol level, as it announced them ("?" before it has; nodes
    of a release from before levels announce neither)."""
    return f"{n.get('version') or '?'} (p{n.get('protocol', 1)})"


async def _ls(args, client: ShoalClient) -> int:
    if args.follow:
        return await follow(args, client, "/v1/nodes", _render_nodes)
    return emit(args, await client.get("/v1/nodes"), _render_nodes)


async def _inspect(args, client: ShoalClient) -> int:
    return emit(args, await client.get(f"/v1/nodes/{args.ref}"), output.detail)


async def _ps(args, client: ShoalClient) -> int:
    """As `docker node ps`: without NODE, the node answering (docker's `self`)."""
    if args.ref:
        node_id = (await client.get(f"/v1/nodes/{args.ref}"))["id"]
    else:
        node_id = (await client.get("/v1/cluster"))["this_node"]["id"]
    return tasks.print_listing(
        args, [t for t in await client.get("/v1/tasks") if t["node_id"] == node_id]
    )


async def _update(args, client: ShoalClient) -> int:
    body: dict = {"add_labels": dict(args.label_add), "remove_labels": args.label_rm}
    if args.availability:
        body["availability"] = args.availability
    if not (args.label_add or args.label_rm or args.availability):
        raise UsageError("nothing to update: give --label-add, --label-rm or --availability")
    return emit(args, await client.patch(f"/v1/nodes/{args.ref}", body), output.detail)


async def _role_change(args, client: ShoalClient) -> int:
    """The node's new role and the voter set it left: a promotion at the target size
    demotes another voter in exchange, and the operator should see which."""
    node = await client.post(f"/v1/nodes/{args.ref}/{args.verb}")
    if args.output == "json":
        return emit(args, node, lambda n: None)
    voters = sorted(n["name"] for n in await client.get("/v1/nodes") if n["role"] == "voter")
    print(f"{node['name']} is now a {node['role']}; voters: {', '.join(voters)}")
    return 0


async def _rm(args, client: ShoalClient) -> int:
    params = {"force": "true"} if args.force else {}
    answer = await client.delete(f"/v1/nodes/{args.ref}", **params)
    return emit(args, answer, lambda a: print(f"removed {a['removed']}"))


async def _status(args, client: ShoalClient) -> int:
    def render(c: dict) -> None:
        leader = c["leader"]
        output.table(
            ("FIELD", "VALUE"),
            [
                ("cluster", c["cluster_id"]),
                (
                    "leader",
                    f"{leader['name']} ({leader['id']}, {leader['address']})"
                    if leader
                    else "none (no quorum?)",
                ),
                ("term", c["term"]),
                ("commit index", c["commit_index"]),
                ("voters", len(c["voters"])),
                ("members", len(c["members"])),
                ("protocol level", _levels(c.get("protocol"))),
            ],
        )

    return emit(args, await client.get("/v1/cluster"), render)


def _levels(levels: dict | None) -> str:
    """The cluster's protocol level (what its leader writes) beside this node's own."""
    if levels is None:  # a node of a release from before levels
        return "1 (this node: 1)"
    return f"{levels['minimum']} (this node: {levels['this_node']}, release {levels['version']})"


def _printing(method: str, path: str, field: str) -> Callable:
    """A handler that calls `method path` and prints one field of the answer (all of it
    with `-o json`)."""

    async def handler(args, client: ShoalClient) -> int:
        answer = await (client.get(path) if method == "GET" else client.post(path))
        return emit(args, answer, lambda a: print(a[field]))

    return handler


_token = _printing("GET", "/v1/cluster/token", "token")
_recovery_key = _printing("GET", "/v1/cluster/recovery-key", "recovery_key")
_rotate_token = _printing("POST", "/v1/cluster/token/rotate", "token")
_rotate_ca = _printing("POST", "/v1/cluster/ca/rotate", "token")


def _dev(args: argparse.Namespace) -> int:
    from node.devcluster.dev import run_dev_cluster

    if not 1 <= args.nodes <= 250:
        raise UsageError("--nodes must be between 1 and 250")
    if not 0 <= args.demo_port <= 65535:
        raise UsageError("--demo-port must be a port number (0 for no demo service)")
    api_port = _defaults()["api_port"] if args.api_port is None else args.api_port
    return run_dev_cluster(
        args.nodes,
        os.path.abspath(args.data_dir or ".shoal-dev"),
        api_port,
        runtime=args.runtime,
        demo_port=args.demo_port,
        log_format=args.log_format,
    )
