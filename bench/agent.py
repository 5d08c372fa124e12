"""Agent benchmark: a 30-replica busybox httpd service on a real 3-node cluster with Docker.

    python -m bench.agent [--runs 3] [--replicas 30] [--quick]

Per run: a fresh 3-node cluster (`--runtime docker`) on loopback; the node processes' RSS
once idle; the time from `POST /v1/services` (replicas N, one published port each) until the
API shows N tasks running; the RSS again with the tasks running. The service is then deleted
and its containers are gone before the next run. For reference, each run also times N plain
`docker run -d -p` of the same container in parallel: the engine's own floor on this machine. Prints each run and the medians (with
min-max) and ends with one `RESULT {json}` line. Targets (issue 5): 30 running in <= 10 s on
this machine; node RSS <= 60 MB idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time

from bench.stats import summarize_runs
from node.localcluster import LocalCluster, wait_for
from node.runtime import procfs
from tests.e2e.conftest import BUSYBOX_IMAGE, _build_busybox, _image_exists

SERVICE = "agentbench"
MiB = 1 << 20


def node_rss_mib(cluster: LocalCluster) -> list[float]:
    """Resident memory of each node process."""
    sizes = []
    for node in cluster.nodes:
        stat = procfs.read_stat(node.proc.pid) if node.proc is not None else None
        sizes.append(stat.rss_pages * procfs.PAGE_SIZE / MiB if stat else 0.0)
    return sizes


async def running_count(cluster: LocalCluster) -> int:
    rows = await cluster.get(0, f"/v1/tasks?service={SERVICE}")
    return sum(1 for t in rows if t["state"] == "running" and t["desired"] == "running")


def remove_leftovers() -> None:
    """The containers outlive their nodes by design: remove what a run left behind."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=shoal.service={SERVICE}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=True)


async def docker_run_floor(replicas: int) -> float:
    """Seconds for `replicas` parallel `docker run` of the same container, then removed."""
    label = f"shoal-bench-floor={time.monotonic_ns()}"
    argv = [
        "docker",
        "run",
        "-d",
        "--init",
        "--label",
        label,
        "-p",
        "127.0.0.1::80",
        BUSYBOX_IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/tmp",
    ]
    started = time.monotonic()
    procs = [
        await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL)
        for _ in range(replicas)
    ]
    codes = [await p.wait() for p in procs]
    elapsed = time.monotonic() - started
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=True)
    assert codes == [0] * replicas, f"docker run failed: exit statuses {codes}"
    return elapsed


async def one_run(replicas: int, settle: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-agent-") as base:
        cluster = LocalCluster(base, 3, ["--runtime", "docker"])
        try:
            await cluster.start()
            await asyncio.sleep(settle)  # let start-up work (joins, elections) finish
            idle = node_rss_mib(cluster)
            async with cluster.nodes[0].client(timeout=30) as client:
                started = time.monotonic()
                await client.post(
                    "/v1/services",
                    {
                        "name": SERVICE,
                        "image": BUSYBOX_IMAGE,
                        "replicas": replicas,
                        "command": ["httpd", "-f", "-p", "80", "-h", "/tmp"],
                        "ports": ["80"],
                        "stop_grace_period": "1s",
                    },
                )

                async def all_running() -> bool:
                    return await running_count(cluster) == replicas

                await wait_for(all_running, timeout=120, what=f"{replicas} running tasks")
                elapsed = time.monotonic() - started
                await asyncio.sleep(settle)
                busy = node_rss_mib(cluster)
                await client.delete(f"/v1/services/{SERVICE}")

                async def all_gone() -> bool:
                    listed = await asyncio.to_thread(
                        subprocess.run,
                        ["docker", "ps", "-aq", "--filter", f"label=shoal.service={SERVICE}"],
                        capture_output=True,
                        text=True,
                    )
                    return not listed.stdout.split()

                await wait_for(all_gone, timeout=120, what="the service's containers removed")
        finally:
            cluster.stop()
            remove_leftovers()
    return {
        "create_to_running_s": elapsed,
        "docker_run_floor_s": await docker_run_floor(replicas),
        "rss_idle_mib": max(idle),
        "rss_with_tasks_mib": max(busy),
    }


async def main_async(args: argparse.Namespace) -> dict:
    runs = []
    for i in range(args.runs):
        run = await one_run(args.replicas, args.settle)
        runs.append(run)
        print(
            f"run {i + 1}: {args.replicas} running after {run['create_to_running_s']:.2f} s "
            f"(plain docker run: {run['docker_run_floor_s']:.2f} s)   "
            f"node RSS idle {run['rss_idle_mib']:.1f} MiB, with tasks "
            f"{run['rss_with_tasks_mib']:.1f} MiB (largest of 3 nodes)",
            flush=True,
        )
    return summarize_runs(runs)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agent")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=30)
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds to wait before reading memory"
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke-test size")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.replicas, args.settle = 1, 6, 0.5
    if not _image_exists(BUSYBOX_IMAGE):
        _build_busybox(BUSYBOX_IMAGE)
    figures = asyncio.run(main_async(args))
    print(f"\nmedian of {args.runs} run(s) [min-max]:")
    targets = {
        "create_to_running_s": "<= 10",
        "docker_run_floor_s": "",
        "rss_idle_mib": "<= 60 (57.2 MiB)",
        "rss_with_tasks_mib": "",
    }
    for key, value in figures.items():
        print(
            f"  {key:20s} {value['median']:8.2f}  [{value['min']:.2f}-{value['max']:.2f}]"
            f"  target {targets[key] or '-'}"
        )
    print(
        "RESULT "
        + json.dumps(
            {
                "replicas": args.replicas,
                "runs": args.runs,
                "runtime": "docker",
                "nodes": 3,
                **figures,
            }
        )
    )


if __name__ == "__main__":
    main()
