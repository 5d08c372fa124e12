"""A node joining a cluster whose Raft log was compacted: how long until it holds the state.

    python -m bench.join [--state-mb 1,10] [--runs 3] [--quick]

Each run starts 3 voters on loopback that compact their log after 100 entries, fills the
state with configs (500 KiB each) up to the given size, waits until every voter has written a
snapshot, then starts a 4th node with `--join` and measures from its start: when its
`/healthz` first answers 200 (it has the leader's snapshot and the entries after it) and when
the leader shows it `ready` (it joined gossip). Medians with min-max; ends with one
`RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import tempfile
import time

from bench.stats import print_figures, summarize_runs
from node.client import ApiError
from node.localcluster import LocalCluster, NodeProc, wait_for

CONFIG_BYTES = 500 * 1024
SMALL_SNAPSHOTS = ["--runtime", "process", "--snapshot-entries", "100", "--snapshot-interval", "1"]


async def _fill(cluster: LocalCluster, megabytes: float) -> None:
    count = max(1, int(megabytes * 1024 * 1024 / CONFIG_BYTES))
    async with cluster.nodes[0].client(timeout=30) as client:
        for i in range(count):
            data = base64.b64encode(os.urandom(CONFIG_BYTES)).decode()
            for attempt in range(5):  # a loaded machine may miss the write deadline: retry
                try:
                    await client.post(
                        "/v1/configs", {"name": f"blob{i}", "data": data, "exist_ok": True}
                    )
                    break
                except ApiError as exc:
                    if exc.status != 503 or attempt == 4:
                        raise
        target = (await client.get("/v1/nodes"))[0]["id"]
        for i in range(150):  # past the compaction threshold
            await client.patch(f"/v1/nodes/{target}", {"add_labels": {"n": str(i)}})


async def one_run(megabytes: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as base:
        cluster = LocalCluster(base, 3, SMALL_SNAPSHOTS)
        joiner = NodeProc(4, cluster.block, base, list(SMALL_SNAPSHOTS))
        try:
            await cluster.start()
            await _fill(cluster, megabytes)
            since = time.time()

            async def compacted() -> bool:
                dumps = [os.path.join(n.data_dir, "raft", "voter.dump") for n in cluster.nodes]
                return all(os.path.exists(d) and os.path.getmtime(d) >= since - 5 for d in dumps)

            await wait_for(compacted, timeout=60, what="a snapshot on every voter")
            leader = cluster.nodes[await cluster.leader_index()]
            started = time.monotonic()
            joiner.start(join=cluster.nodes[0].api, token=cluster.token)

            async def healthy() -> bool:
                async with joiner.client() as client:
                    return (await client.get("/healthz"))["ok"]

            await wait_for(healthy, timeout=120, what="the new node to catch up")
            caught_up = time.monotonic() - started

            async def ready() -> bool:
                async with leader.client() as client:
                    return (await client.get(f"/v1/nodes/{joiner.name}"))["status"] == "ready"

            await wait_for(ready, timeout=60, what="the new node ready")
            ready_s = time.monotonic() - started
            dump = os.path.getsize(os.path.join(leader.data_dir, "raft", "voter.dump"))
        finally:
            cluster.nodes.append(joiner)
            cluster.stop()
    return {"caught_up_s": caught_up, "ready_s": ready_s, "snapshot_bytes": dump}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.join")
    parser.add_argument(
        "--state-mb", default="1,10", help="comma-separated state sizes in MiB (default 1,10)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run of 1 MiB, for smoke tests")
    args = parser.parse_args()
    sizes = [1.0] if args.quick else [float(s) for s in args.state_mb.split(",")]
    results = {}
    for size in sizes:
        runs = []
        for i in range(1 if args.quick else args.runs):
            run = asyncio.run(one_run(size))
            runs.append(run)
            print(
                f"{size:g} MiB run {i + 1}: caught up {run['caught_up_s']:.2f} s, ready "
                f"{run['ready_s']:.2f} s after start (snapshot {run['snapshot_bytes']} B)",
                flush=True,
            )
        figures = summarize_runs(runs)
        print_figures(
            f"join after compaction, {size:g} MiB state", figures, len(runs), {}, unit=" s"
        )
        results[f"{size:g}MiB"] = figures
    print("RESULT " + json.dumps({"runs": 1 if args.quick else args.runs, **results}))


if __name__ == "__main__":
    main()
