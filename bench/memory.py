"""Memory: a Shoal node's resident set idle and with 100 tasks, beside dockerd+containerd.

    python -m bench.memory [--runs 3] [--tasks 100] [--quick]

Shoal: a 1-node cluster with the process runtime (the tasks are plain `sleep` processes, which
are not counted: the figure is the node process itself), RSS once idle and once N tasks run.
Docker: a private dockerd on a namespace host (bench.refs.hosts), the RSS of dockerd,
containerd and the containerd shims once idle and once N busybox `sleep` containers run:
the engine a Shoal node or a Swarm node sits beside. Medians with min-max; ends with one
`RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from bench.refs.hosts import IMAGE, DockerHosts, unavailable_reason
from bench.stats import print_figures, summarize_runs
from node.localcluster import LocalCluster, wait_for
from node.runtime import procfs
from tests.netbed.teardown import netns_pids

MiB = 1 << 20
SERVICE = "membench"
SETTLE_S = 2.0  # let start-up work (elections, first reports) finish before reading memory
START_CONCURRENCY = 8


def rss_mib(pids: list[int]) -> float:
    stats = (procfs.read_stat(pid) for pid in pids)
    return sum(s.rss_pages for s in stats if s is not None) * procfs.PAGE_SIZE / MiB


async def shoal_run(tasks: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-mem-") as base:
        cluster = LocalCluster(base, 1, ["--runtime", "process"])
        try:
            await cluster.start()
            await asyncio.sleep(SETTLE_S)
            pid = cluster.nodes[0].proc.pid
            idle = rss_mib([pid])
            async with cluster.nodes[0].client(timeout=30) as client:
                await client.post(
                    "/v1/services",
                    {
                        "name": SERVICE,
                        "image": "process",
                        "replicas": tasks,
                        "command": ["sleep", "3600"],
                    },
                )

                async def all_running() -> bool:
                    rows = await client.get(f"/v1/tasks?service={SERVICE}")
                    return sum(t["state"] == "running" for t in rows) >= tasks

                await wait_for(all_running, timeout=180, what=f"{tasks} running tasks")
                await asyncio.sleep(SETTLE_S)
                busy = rss_mib([pid])
                await client.delete(f"/v1/services/{SERVICE}")
        finally:
            cluster.stop()
    return {"shoal_idle_mib": idle, "shoal_with_tasks_mib": busy}


def docker_run(tasks: int) -> dict[str, float]:
    with DockerHosts(1) as hosts:
        netns, daemon = hosts.bed.hosts[0].netns, hosts.daemons[0]

        def engine() -> float:  # dockerd, containerd and the shims: all live in the host's netns
            return rss_mib(netns_pids(netns))

        time.sleep(SETTLE_S)
        idle = engine()
        with ThreadPoolExecutor(START_CONCURRENCY) as pool:
            list(
                pool.map(
                    lambda _: daemon.docker("run", "-d", "--init", IMAGE, "sleep", "3600"),
                    range(tasks),
                )
            )
        time.sleep(SETTLE_S)
        busy = engine()
    return {"docker_idle_mib": idle, "docker_with_tasks_mib": busy}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="a small smoke-test size")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.tasks = 1, 10
    reason = unavailable_reason()
    if reason:
        print(f"dockerd+containerd not measured: {reason}")
    runs = []
    for i in range(args.runs):
        run = asyncio.run(shoal_run(args.tasks))
        if not reason:
            run.update(docker_run(args.tasks))
        runs.append(run)
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in run.items()), flush=True)
    figures = summarize_runs(runs)
    print_figures(f"resident memory (MiB) with {args.tasks} tasks", figures, args.runs)
    print(
        "RESULT "
        + json.dumps({"tasks": args.tasks, "runs": args.runs, "docker_skipped": reason, **figures})
    )


if __name__ == "__main__":
    main()
