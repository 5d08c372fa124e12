"""Jobs and cron on 3 local `shoal node` processes (process runtime).

    python -m bench.jobs [--tasks 1000] [--firings 20] [--quick]

A job of N one-shot tasks (`true`, all at once) from `POST /v1/jobs` to its last completion:
completions per second, and the time to the first and the last completion (the agents'
reported end times against the clock before the request; one machine, so one clock). Then a
cron job firing every 2 seconds: per firing, how late the leader decided to start it (the
run's creation) and how late its task was running (or had run), p50 and p99. Ends with `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time

from bench.stats import percentile
from node.localcluster import EQUAL_PROCESS_NODES, LocalCluster, wait_for

EVERY = 2  # seconds between cron firings


async def one_job(cluster: LocalCluster, tasks: int) -> dict:
    body = {
        "name": "bench",
        "image": "process",
        "args": ["true"],
        "job": {"completions": tasks, "parallelism": 0},
    }
    started = time.time()
    async with cluster.nodes[0].client(timeout=60) as client:
        await client.post("/v1/jobs", body)

        async def finished() -> dict | None:
            job = await client.get("/v1/jobs/bench")
            return job if job["status"] != "running" else None

        job = await wait_for(finished, timeout=600, what="the job to finish")
    ends = sorted(t["finished_at"] for t in job["tasks"] if t["state"] == "complete")
    last = ends[-1] - started
    return {
        "status": job["status"],
        "completions": len(ends),
        "failed": job["failed"],
        "completions_per_s": len(ends) / last,
        "first_completion_s": ends[0] - started,
        "last_completion_s": last,
    }


async def cron_delays(cluster: LocalCluster, firings: int) -> dict:
    body = {
        "name": "tick",
        "schedule": f"* * * * * */{EVERY}",
        "history": firings + 5,
        "template": {"image": "process", "args": ["true"]},
    }
    async with cluster.nodes[0].client(timeout=30) as client:
        await client.post("/v1/crons", body)

        async def fired() -> list | None:
            runs = (await client.get("/v1/crons/tick"))["runs"]
            done = [r for r in runs if r["status"] != "running"]
            return done if len(done) >= firings else None

        runs = (await wait_for(fired, timeout=firings * EVERY * 3 + 30, what="the firings"))[
            :firings
        ]
        decided, running = [], []
        for run in runs:
            scheduled = int(run["name"].rsplit("-", 1)[1])
            job = await client.get(f"/v1/jobs/{run['name']}")
            decided.append(run["created_at"] - scheduled)
            # `true` may end before a report says it runs: then its end is when it ran.
            running.append(
                min(t["started_at"] or t["finished_at"] for t in job["tasks"]) - scheduled
            )
        await client.delete("/v1/crons/tick")
    return {
        "firings": len(runs),
        "decision_p50_s": percentile(decided, 0.5),
        "decision_p99_s": percentile(decided, 0.99),
        "running_p50_s": percentile(running, 0.5),
        "running_p99_s": percentile(running, 0.99),
    }


async def run(tasks: int, firings: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-jobs-") as base:
        cluster = LocalCluster(base, 3, EQUAL_PROCESS_NODES)
        try:
            await cluster.start()
            job = await one_job(cluster, tasks)
            print(
                f"job of {tasks} tasks: {job['status']}, {job['completions_per_s']:.0f} completions/s, "
                f"first {job['first_completion_s']:.2f} s, last {job['last_completion_s']:.2f} s",
                flush=True,
            )
            cron = await cron_delays(cluster, firings)
            print(
                f"cron every {EVERY} s, {cron['firings']} firings: decided p50 "
                f"{cron['decision_p50_s']:.3f} s p99 {cron['decision_p99_s']:.3f} s; task running "
                f"p50 {cron['running_p50_s']:.3f} s p99 {cron['running_p99_s']:.3f} s",
                flush=True,
            )
        finally:
            cluster.stop()
    return {"tasks": tasks, "job": job, "cron": cron}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jobs")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--firings", type=int, default=20)
    parser.add_argument(
        "--quick", action="store_true", help="100 tasks and 5 firings, for smoke tests"
    )
    args = parser.parse_args()
    tasks, firings = (100, 5) if args.quick else (args.tasks, args.firings)
    result = asyncio.run(run(tasks, firings))
    print("targets: >= 100 completions/s, first completion <= 1 s, cron delay p99 <= 1 s")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
