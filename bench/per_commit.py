"""Per-commit cost on a node: what each consumer that runs on every node after every commit
costs when one task of a large state changes.

    python -m bench.per_commit [--sizes 1000,20000] [--nodes 200] [--services 2000] [--commits 200]

Per size, in this process, with the real state machine, store and loops: a state of `--nodes`
simulated nodes and up to `--services` services whose tasks are all assigned by the real
scheduling rounds (bench.scheduler), served as a member serves it (consensus.feed_state, built
from the state's snapshot). Then `--commits` commits, each one agent's report that one of its
tasks runs (tasks taken evenly across the state, so mostly about other nodes than the one
measured, as on a real node), encoded as the log carries it. The median microseconds per
commit of:

- feed_apply: the member's copy applies the entry and publishes the next version (the store);
- agent: the agent's planner for one node (node.agent.plan.Planner);
- mesh_announce, mesh_routes: the routing mesh's two loops (`announce`, `sync`) over a real
  gossip service on loopback (its table holds this node's entries only: the view would cost
  more with every node's), with no data plane;
- overlay: the overlay loop's view of this node, which it works out (and converges the
  kernel to, not measured here) when the services or networks table changed;
- events: the event feed's events of the commit.

The scheduler and the autoscaler run on the leader alone, so they are not measured.

Ends with one `RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable

from bench.lb import free_ports
from bench.scheduler import assigned_state
from consensus import codec
from consensus.feed_state import FeedState
from consensus.feed_wire import Entries, Snapshot
from consensus.networks import NETWORKS
from consensus.store import StateVersion
from consensus.tasks import SERVICES, TASKS, ReportTaskStatus, TaskReport
from netoverlay.gossip import GossipService, GossipServiceConfig
from node.agent.plan import Planner
from node.loops.events import events_between
from node.mesh import Mesh, MeshConfig
from node.overlay.view import node_overlay
from scheduler.view import StateView

Consumer = Callable[[StateVersion, StateVersion], object]


def consumers(node_id: str, mesh: Mesh) -> dict[str, Consumer]:
    """Each per-commit consumer, as a function of (the version before, the version after)."""
    planner = Planner(node_id)
    return {
        "agent": lambda _before, now: planner.decide(now, {}),
        "mesh_announce": lambda _before, _now: mesh.announce(),
        "mesh_routes": lambda _before, _now: mesh.sync(),
        "overlay": lambda before, now: (
            None
            if now.shares(before, SERVICES, NETWORKS)
            else node_overlay(now, node_id, "10.0.0.1", (), (), 4789)
        ),
        "events": lambda before, now: events_between(
            StateView.capture(before), StateView.capture(now)
        ),
    }


async def measure(nodes: int, tasks: int, n_services: int, commits: int) -> dict:
    state, _ = assigned_state(nodes, tasks, n_services)
    copy = FeedState()
    copy.restore(Snapshot(state.applied, state.to_msgpack()))
    every = list(state.table(TASKS).values())
    reported = every[:: max(1, len(every) // commits)][:commits]
    observer = every[0].node_id
    (port,) = free_ports("127.0.0.1", 1)
    gossip = GossipService(
        GossipServiceConfig(node_id=observer, secret=b"k" * 32, host="127.0.0.1", port=port)
    )
    await gossip.start()
    mesh = Mesh(
        MeshConfig(observer, dns_port=0),
        gossip=gossip,
        read_state=lambda: copy.version,
        subscribe=asyncio.Event,
        on_report=lambda _observer: lambda: None,
    )
    try:
        await mesh.start()
        measured = consumers(observer, mesh)
        for consume in measured.values():  # each takes in the state once, as at a node's start
            await _timed(consume, copy.version, copy.version)
        seconds: dict[str, list[float]] = {"feed_apply": []}
        for n, task in enumerate(reported):
            entry = codec.encode(
                ReportTaskStatus(task.node_id, 1.0 + n, (TaskReport(task.id, "running"),))
            )
            before = copy.version
            started = time.perf_counter()
            copy.apply(Entries(copy.applied + 1, (entry,)))
            seconds["feed_apply"].append(time.perf_counter() - started)
            for name, consume in measured.items():
                seconds.setdefault(name, []).append(await _timed(consume, before, copy.version))
    finally:
        await mesh.stop()
        await gossip.stop()
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    return {
        "tasks": len(every),
        "services": n_services,
        "per_commit_us": {name: round(s * 1e6, 1) for name, s in medians.items()},
        "total_us": round(sum(medians.values()) * 1e6, 1),
    }


async def _timed(consume: Consumer, before: StateVersion, now: StateVersion) -> float:
    started = time.perf_counter()
    result = consume(before, now)
    if isinstance(result, Awaitable):
        await result
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,20000")
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--commits", type=int, default=200)
    args = parser.parse_args()
    rows = {}
    for size in (int(s) for s in args.sizes.split(",")):
        services = min(args.services, size // 10)
        rows[size] = asyncio.run(measure(args.nodes, size, services, args.commits))
        print(size, "tasks:", json.dumps(rows[size]["per_commit_us"]), flush=True)
    print("RESULT " + json.dumps({"nodes": args.nodes, "sizes": rows}))


if __name__ == "__main__":
    main()
