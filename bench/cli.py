"""CLI: how long a `shoal` command takes against a running node, beside `docker ps`.

    python -m bench.cli [--runs 15] [--nodes 3] [--quick]

A 3-node cluster (process runtime) with a 3-replica service; each command runs in a fresh
process, as a user types it: `shoal node ls`, `shoal service ps NAME` (through
`python -m node`, what the `shoal` script runs) through the node's socket, `shoal service
ls` over TCP with the API token, `docker ps` against this machine's Docker Engine when one
answers, and the interpreter's own start-up (`python -c pass`), the floor of any command;
`shoal node ls --stale` answers from the node's copy, without the read barrier a
linearizable read commits through Raft (about 2 ms on 3 nodes; on a single node about 50
ms, pysyncobj's tick, as nothing else wakes its thread). Commands run with bytecode caches,
as an installed package has them (PYTHONDONTWRITEBYTECODE would have every run compile). Wall and CPU (user + system of the child) time per command,
medians with min-max, and Shoal's wall time over docker's; ends with one `RESULT {json}` line.
The issue's target: at most 1.5 times docker's wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench.stats import print_figures, summarize_runs
from node.devcluster.localcluster import LocalCluster, wait_for
from tests.support import processes_working_under

SERVICE = "clibench"


_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `argv` (which must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=_ENV)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace')}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def docker_reason() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client installed"
    probe = subprocess.run(["docker", "ps"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"docker ps failed: {probe.stderr.strip()}"


async def measure(runs: int, nodes: int) -> tuple[list[dict[str, float]], str | None]:
    reason = docker_reason()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-cli-") as base:
        cluster = LocalCluster(base, nodes, ["--runtime", "process"])
        try:
            await cluster.start()
            async with cluster.nodes[0].client() as client:
                await client.post(
                    "/v1/services",
                    {
                        "name": SERVICE,
                        "image": "process",
                        "replicas": 3,
                        "command": ["sleep", "600"],
                    },
                )

                async def running() -> bool:
                    rows = await client.get("/v1/tasks", service=SERVICE)
                    return sum(t["state"] == "running" for t in rows) == 3

                await wait_for(running, what="3 running tasks")
            # Through the node's socket, as docker ps reaches its engine on the same machine;
            # and over TCP with the API token, as from another machine.
            node = cluster.nodes[0]
            shoal = [sys.executable, "-m", "node", "--addr", node.socket]
            tcp = [
                sys.executable,
                "-m",
                "node",
                "--addr",
                node.url,
                "--token",
                node.api_token,
                "--ca",
                node.ca_file,
            ]
            commands = {
                "shoal_node_ls": [*shoal, "node", "ls"],
                "shoal_service_ps": [*shoal, "service", "ps", SERVICE],
                "shoal_service_ls_tcp": [*tcp, "service", "ls"],
                "shoal_node_ls_stale": [*shoal, "node", "ls", "--stale"],
                "python_startup": [sys.executable, "-c", "pass"],
            }
            if reason is None:
                commands["docker_ps"] = ["docker", "ps"]
            for argv in commands.values():
                timed(argv)  # warm the page cache once, as a user's second command finds it
            samples = []
            for _ in range(runs):
                sample = {}
                for name, argv in commands.items():
                    wall, cpu = timed(argv)
                    sample[f"{name}_wall_s"], sample[f"{name}_cpu_s"] = wall, cpu
                samples.append(sample)
            async with cluster.nodes[0].client() as client:
                await client.delete(f"/v1/services/{SERVICE}")

            async def tasks_gone() -> bool:
                return not processes_working_under(base)

            await wait_for(tasks_gone, what="the service's tasks to stop")
        finally:
            cluster.stop()
            for pid in processes_working_under(base):  # tasks outlive their node by design
                os.kill(pid, signal.SIGKILL)
    return samples, reason


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cli")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    parser.add_argument("--quick", action="store_true", help="a small smoke-test size")
    args = parser.parse_args()
    if args.quick:
        args.runs = 3
    samples, reason = asyncio.run(measure(args.runs, args.nodes))
    if reason:
        print(f"docker ps not measured: {reason}")
    figures = summarize_runs(samples)
    print_figures("one CLI command (s)", figures, args.runs)
    ratios = {}
    if reason is None:
        docker = figures["docker_ps_wall_s"]["median"]
        for name in (
            "shoal_node_ls",
            "shoal_service_ps",
            "shoal_service_ls_tcp",
            "shoal_node_ls_stale",
            "python_startup",
        ):
            ratios[f"{name}_vs_docker_ps"] = figures[f"{name}_wall_s"]["median"] / docker
            print(
                f"  {name} wall / docker ps wall: {ratios[f'{name}_vs_docker_ps']:.2f}x "
                f"(target <= 1.5x)"
            )
    print(
        "RESULT "
        + json.dumps(
            {"runs": args.runs, "nodes": args.nodes, "docker_skipped": reason, **figures, **ratios}
        )
    )


if __name__ == "__main__":
    main()
