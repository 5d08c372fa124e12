"""Per-commit cost on a node: what each consumer that runs on every node after every commit
costs when one task of a large state changes.

    python -m bench.per_commit [--sizes 1000,20000] [--nodes 200] [--services 2000] [--commits 50]

Per size, in this process, with the real state machine, store and loops' functions: a state of
`--nodes` simulated nodes and `--services` services whose tasks are all assigned by the real
scheduling rounds (bench.scheduler), served as a member serves it (consensus.feed_state, built
from the state's snapshot). Then `--commits` commits, each one agent's report that one of its
tasks runs, encoded as the log carries it. For each commit and each consumer, the median
seconds of:

- feed_apply: the member's copy applies the entry and publishes the next version (the store);
- agent: the agent's plan for the reporting node (what is assigned to it, what to do);
- mesh_announce: the endpoint entries the reporting node should hold;
- mesh_routes: the routing mesh's and DNS's view (the route loop wakes on every commit);
- overlay: the overlay loop's view of this node;
- events: the event feed's events of the commit;
- autoscaler: the autoscaler's inputs.

Ends with one `RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from bench.scheduler import assigned_state
from consensus import codec
from consensus.feed_state import FeedState
from consensus.feed_wire import Entries, Snapshot
from consensus.store import StateVersion
from consensus.tasks import TASKS, ReportTaskStatus, TaskReport, services
from node.agent.plan import assigned_to, decide
from node.loops.autoscaler import Inputs
from node.loops.events import events_between
from node.mesh.announce import own_tasks, wanted
from node.mesh.view import build_view
from node.overlay.view import node_overlay
from scheduler.view import StateView


def consumers(node_id: str) -> dict[str, Callable[[StateVersion, StateVersion], object]]:
    """Each per-commit consumer, as a function of (the version before, the version after)."""
    return {
        "agent": lambda _before, now: decide(assigned_to(now, node_id), {}),
        "mesh_announce": lambda _before, now: wanted(own_tasks(now, node_id), {}),
        "mesh_routes": lambda _before, now: build_view(
            [s.spec for s in services(now).values()], (), ()
        ),
        "overlay": lambda _before, now: node_overlay(now, node_id, "10.0.0.1", (), (), 4789),
        "events": lambda before, now: events_between(
            StateView.capture(before), StateView.capture(now)
        ),
        "autoscaler": lambda _before, now: Inputs.read(now),
    }


def measure(nodes: int, tasks: int, n_services: int, commits: int) -> dict:
    state, _ = assigned_state(nodes, tasks, n_services)
    copy = FeedState()
    copy.restore(Snapshot(state.applied, state.to_msgpack()))
    reported = list(state.table(TASKS).values())[:commits]
    seconds: dict[str, list[float]] = {"feed_apply": []}
    for n, task in enumerate(reported):
        entry = codec.encode(
            ReportTaskStatus(task.node_id, 1.0 + n, (TaskReport(task.id, "running"),))
        )
        before = copy.version
        started = time.perf_counter()
        copy.apply(Entries(copy.applied + 1, (entry,)))
        seconds["feed_apply"].append(time.perf_counter() - started)
        for name, consume in consumers(task.node_id).items():
            started = time.perf_counter()
            consume(before, copy.version)
            seconds.setdefault(name, []).append(time.perf_counter() - started)
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    return {
        "tasks": len(state.table(TASKS)),
        "per_commit_us": {name: round(s * 1e6, 1) for name, s in medians.items()},
        "total_us": round(sum(medians.values()) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,20000")
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--commits", type=int, default=50)
    args = parser.parse_args()
    rows = {}
    for size in (int(s) for s in args.sizes.split(",")):
        rows[size] = measure(args.nodes, size, min(args.services, size), args.commits)
        print(size, "tasks:", json.dumps(rows[size]["per_commit_us"]), flush=True)
    print("RESULT " + json.dumps({"nodes": args.nodes, "services": args.services, "sizes": rows}))


if __name__ == "__main__":
    main()
