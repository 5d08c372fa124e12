"""Scale curve: how scheduling time and the Raft snapshot grow from 1,000 to 100,000 tasks.

    python -m bench.scale [--nodes 5000] [--sizes 1000,3000,10000,30000,100000] [--runs 3] [--quick]

For each size, on `--nodes` simulated nodes (bench.scheduler's cluster: four zones, 100
services, some constrained, some spread): the time of one pure `place` of every task, by wall
clock and by the thread's CPU time (median and min-max of --runs runs, each from a fresh node
view); and the snapshot Raft writes at log compaction once every task is assigned by the real
scheduling rounds and state machine: `len(state.to_msgpack())`, which is exact (the same at
every run, so it is measured once), with the time to serialize and restore it. Ends with one
`RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import json

from bench.scheduler import cluster, run_once, snapshot_figures
from bench.stats import summary

SERVICES = 100


def measure(nodes: int, tasks: int, runs: int) -> dict:
    view = cluster(nodes, tasks, SERVICES, "spread")
    walls, cpus, rates = [], [], []
    for seed in range(runs):
        wall, cpu, placed, _ = run_once(view, seed)
        walls.append(wall)
        cpus.append(cpu)
        rates.append(placed / wall)
    snapshot = snapshot_figures(nodes, tasks, SERVICES)
    return {
        "schedule_s": summary(walls),
        "schedule_cpu_s": summary(cpus),
        "placements_per_s": summary(rates),
        "snapshot_bytes": snapshot["snapshot_bytes"],
        "snapshot_serialize_s": snapshot["serialize_s"],
        "snapshot_restore_s": snapshot["restore_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--sizes", default="1000,3000,10000,30000,100000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a small smoke-test size")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.sizes, args.runs = 500, "1000,3000", 1
    sizes = {}
    print(
        f"{'tasks':>8} {'place s':>8} {'[min-max]':>15} {'CPU s':>7} {'placements/s':>13} "
        f"{'snapshot MB':>12} {'B/task':>7} {'dump s':>7} {'load s':>7}"
    )
    for tasks in (int(x) for x in args.sizes.split(",")):
        row = sizes[str(tasks)] = measure(args.nodes, tasks, args.runs)
        wall = row["schedule_s"]
        print(
            f"{tasks:>8} {wall['median']:>8.3f} {wall['min']:>7.3f}-{wall['max']:<7.3f} "
            f"{row['schedule_cpu_s']['median']:>7.3f} {row['placements_per_s']['median']:>13,.0f} "
            f"{row['snapshot_bytes'] / 1e6:>12.2f} {row['snapshot_bytes'] / tasks:>7.0f} "
            f"{row['snapshot_serialize_s']:>7.2f} {row['snapshot_restore_s']:>7.2f}",
            flush=True,
        )
    print(
        f"({args.nodes} simulated nodes, {SERVICES} services; place times are medians of "
        f"{args.runs} run(s); the snapshot includes the {args.nodes} node records)"
    )
    print(
        "RESULT "
        + json.dumps({"nodes": args.nodes, "services": SERVICES, "runs": args.runs, "sizes": sizes})
    )


if __name__ == "__main__":
    main()
