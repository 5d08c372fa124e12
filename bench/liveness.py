"""Failure detection on a real cluster: kill -9 of a node -> `down` on every survivor.

    python -m bench.liveness [--nodes 5] [--runs 3] [--quick]

Each run starts a real cluster on loopback, kills a non-leader with SIGKILL and measures, by
polling every survivor's `GET /v1/nodes/{name}` every 20 ms, when each one shows the node
`down` (gossip's verdict, committed by the leader as NodeDown and replicated); then restarts
it and measures the time until the leader shows it `ready` again. Medians with min-max; ends
with one `RESULT {json}` line. Target (issue): down everywhere within 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time

from bench.stats import print_figures, summarize_runs
from node.localcluster import LocalCluster, wait_for


async def one_run(size: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as base:
        cluster = LocalCluster(base, size, ["--runtime", "process"])
        try:
            await cluster.start()

            async def settled() -> bool:
                members = (await cluster.get(0, "/v1/cluster/members"))["members"]
                voters = (await cluster.get(0, "/v1/cluster"))["voters"]
                return sum(m["state"] == "alive" for m in members) == size and len(voters) == min(
                    size if size % 2 else size - 1, 5
                )

            await wait_for(settled, timeout=90, what="a settled cluster")
            leader = await cluster.leader_index()
            victim = next(i for i in range(size) if i != leader)
            name = cluster.nodes[victim].name
            survivors = [i for i in range(size) if i != victim]
            killed = time.monotonic()
            cluster.nodes[victim].kill9()
            seen: dict[int, float] = {}
            while len(seen) < len(survivors) and time.monotonic() - killed < 60:
                for i in survivors:
                    if (
                        i not in seen
                        and (await cluster.get(i, f"/v1/nodes/{name}"))["status"] == "down"
                    ):
                        seen[i] = time.monotonic() - killed
                await asyncio.sleep(0.02)
            restarted = time.monotonic()
            cluster.nodes[victim].start()

            async def ready() -> bool:
                return (await cluster.get(leader, f"/v1/nodes/{name}"))["status"] == "ready"

            await wait_for(ready, timeout=60, what=f"{name} ready again")
            back = time.monotonic() - restarted
        finally:
            cluster.stop()
    return {
        "first_down_s": min(seen.values()),
        "all_down_s": max(seen.values()),
        "ready_again_s": back,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.liveness")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run, for smoke tests")
    args = parser.parse_args()
    runs = []
    for i in range(1 if args.quick else args.runs):
        run = asyncio.run(one_run(args.nodes))
        runs.append(run)
        print(
            f"run {i + 1}: first survivor {run['first_down_s']:.2f} s, every survivor "
            f"{run['all_down_s']:.2f} s, ready again {run['ready_again_s']:.2f} s after restart",
            flush=True,
        )
    figures = summarize_runs(runs)
    print_figures(f"{args.nodes} nodes", figures, len(runs), {"all_down_s": "<= 3"}, unit=" s")
    print("RESULT " + json.dumps({"nodes": args.nodes, "runs": len(runs), **figures}))


if __name__ == "__main__":
    main()
