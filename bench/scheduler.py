"""Scheduler throughput: pure placements per second on a large simulated cluster.

    python -m bench.scheduler --nodes 5000 --tasks 100000 [--services 100] [--runs 3]

The cluster has `--nodes` nodes in four zones, `--services` replicated services sharing
`--tasks` tasks; a quarter of the services carry a zone constraint, a quarter spread over
zones. Each run reconciles (creating the pending tasks) and then times `place` alone, from
a fresh node view. Prints the median of the runs, by wall clock and by the thread's CPU
time (which other load on the machine does not inflate); the last line is `RESULT {json}`.
`committed_per_s` (assignments committed through Raft) is null: this is the pure half.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import ClusterInfo, Node, Resources
from consensus.services import parse_service_spec
from consensus.tasks import Service
from scheduler.placement import place
from scheduler.reconcile import reconcile
from scheduler.view import StateView

ZONES = ("a", "b", "c", "d")


def cluster(n_nodes: int, n_tasks: int, n_services: int, strategy: str) -> StateView:
    nodes = {}
    for i in range(n_nodes):
        node_id = f"node{i:05d}"
        nodes[node_id] = Node(node_id, f"host{i}", f"10.0.{i // 250}.{i % 250}", 7420, 7421, 7422,
                              labels={"zone": ZONES[i % len(ZONES)]},
                              resources=Resources(16_000, 64 << 30))
    services = {}
    per_service, extra = divmod(n_tasks, n_services)
    for s in range(n_services):
        plain = {"name": f"svc{s}", "image": "busybox", "replicas": per_service + (s < extra),
                 "resources": {"reservations": {"cpu": "100m", "memory": "128Mi"}}}
        if s % 4 == 1:
            plain["constraints"] = [f"node.labels.zone!={ZONES[s % len(ZONES)]}"]
        elif s % 4 == 2:
            plain["preferences"] = ["spread=node.labels.zone"]
        spec = parse_service_spec(plain)
        services[spec.name] = Service(f"id{s}", spec)
    return StateView(ClusterInfo(strategy=strategy), nodes, services, {})


def run_once(view: StateView, seed: int) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds of this thread, placed, unplaceable) of one `place` call."""
    counter = itertools.count()
    plan = reconcile(view, 0.0, lambda: f"t{next(counter)}")
    start, start_cpu = time.perf_counter(), time.thread_time()
    result = place(view, plan.create, seed)
    cpu = time.thread_time() - start_cpu
    return time.perf_counter() - start, cpu, len(result.placements), len(result.unplaceable)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--strategy", choices=("spread", "binpack"), default="spread")
    args = parser.parse_args()
    view = cluster(args.nodes, args.tasks, args.services, args.strategy)
    rates, cpu_rates = [], []
    for run in range(args.runs):
        elapsed, cpu, placed, unplaceable = run_once(view, seed=run)
        rates.append(placed / elapsed)
        cpu_rates.append(placed / cpu)
        print(f"run {run + 1}: placed {placed} tasks ({unplaceable} unplaceable) on {args.nodes} nodes "
              f"in {elapsed:.3f} s = {placed / elapsed:,.0f} placements/s "
              f"({cpu:.3f} s CPU = {placed / cpu:,.0f}/s)")
    median, median_cpu = statistics.median(rates), statistics.median(cpu_rates)
    # Wall clock is the figure; CPU time shows what other load on the machine took away.
    print(f"median of {args.runs} runs: {median:,.0f} placements/s wall clock, "
          f"{median_cpu:,.0f}/s by CPU time (target >= 20,000)")
    print("RESULT " + json.dumps({
        "nodes": args.nodes, "tasks": args.tasks, "services": args.services,
        "strategy": args.strategy, "runs": args.runs, "placements_per_s": round(median),
        "placements_per_s_cpu": round(median_cpu), "committed_per_s": None}))


if __name__ == "__main__":
    main()
