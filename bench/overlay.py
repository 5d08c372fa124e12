"""Overlay networks on 3 machines: HTTP from one host to a service on another through its
VIP, to its task's overlay address, and over the underlay without the overlay; and how fast
the VIP follows a new task and a dead one.

    python -m bench.overlay [--runs 3] [--duration 5] [--connections 8]

A bed of 3 namespace hosts with a private dockerd each (bench.refs.hosts), one `shoal node
--overlay` per host. Service `web` (busybox httpd) runs on h1 on network `benchnet`; wrk runs
in h0's namespace against (a) the VIP, (b) the task's overlay address and (c) a plain
container on h1 publishing a host port (the underlay, no overlay: the physical limit here).
busybox httpd closes every connection, so each request is a new connection: the figures
include connection setup, alike for the three. Then, per run: `web` is scaled to 2 (time from
the new container's start to its address behind the VIP on h0) and a container is killed
(time until every node's VIP has dropped it). Medians with min-max; ends with `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time

from bench.lb import parse_wrk
from bench.orchestration import BedCluster
from bench.refs.hosts import HTTPD, IMAGE, DockerHosts, unavailable_reason
from node.localcluster import wait_for
from node.runtime.docker_config import parse_docker_time

NETWORK = "benchnet"
SERVICE = "web"
UNDERLAY_PORT = 18080
TARGETS = ("vip", "overlay", "underlay")


def wrk(host, url: str, args: argparse.Namespace) -> dict[str, float]:
    done = host.run(
        ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency", url],
        timeout=args.duration + 30,
    )
    return parse_wrk(done.stdout)


async def tasks_behind_vip(cluster: BedCluster, i: int) -> list[str]:
    status = await cluster.get(i, "/v1/overlay")
    found = [n for n in status["networks"] if n["name"] == NETWORK]  # none until the node syncs
    return found[0]["services"].get(SERVICE, {}).get("tasks", []) if found else []


async def scale(cluster: BedCluster, replicas: int) -> None:
    async with cluster.client(0) as client:
        await client.request("PATCH", f"/v1/services/{SERVICE}", json_body={"replicas": replicas})


def container_with(daemon, address: str) -> dict:
    """The inspect data of the container of `web` that holds `address` on the network."""
    for cid in daemon.docker("ps", "-q", "--filter", f"label=shoal.service={SERVICE}").split():
        seen = json.loads(daemon.docker("inspect", cid))[0]
        if (
            seen["NetworkSettings"]["Networks"].get(f"shoal-{NETWORK}", {}).get("IPAddress")
            == address
        ):
            return seen
    raise RuntimeError(f"no container of {SERVICE} holds {address}")


async def poll_until(check, timeout: float, what: str):
    """`check()` until truthy, every 10 ms (finer than the figures it times)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.01)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


async def new_task_behind_vip(cluster: BedCluster, hosts: DockerHosts) -> float:
    """Seconds from the second task's container start to its address behind h0's VIP."""
    before = set(await tasks_behind_vip(cluster, 0))
    await scale(cluster, 2)

    async def joined() -> list[str]:
        return sorted(set(await tasks_behind_vip(cluster, 0)) - before)

    (address,) = await poll_until(joined, timeout=60, what="the new task behind the VIP")
    seen = time.time()
    started = container_with(hosts.daemons[1], address)["State"]["StartedAt"]
    return seen - parse_docker_time(started)


async def dead_task_out_of_vip(cluster: BedCluster, hosts: DockerHosts) -> float:
    """Seconds from `docker kill` of one task's container to every node's VIP without it."""
    daemon = hosts.daemons[1]
    victim = (await tasks_behind_vip(cluster, 0))[-1]
    cid = container_with(daemon, victim)["Id"]
    killed = time.time()
    daemon.docker("kill", cid)

    async def gone_everywhere() -> bool:
        return all([victim not in await tasks_behind_vip(cluster, i) for i in range(3)])

    await poll_until(gone_everywhere, timeout=30, what="the dead task out of every VIP")
    return time.time() - killed


async def run(args: argparse.Namespace) -> dict:
    hosts = await asyncio.to_thread(DockerHosts(3).__enter__)
    try:
        cluster = BedCluster(hosts, ("--overlay",))
        await cluster.start()
        h0, h1 = hosts.bed.hosts[0], hosts.bed.hosts[1]
        hosts.daemons[1].docker(
            "run",
            "-d",
            "--init",
            "-p",
            f"{UNDERLAY_PORT}:80",
            IMAGE,
            "sh",
            "-c",
            f"echo underlay > /tmp/index.html && exec {' '.join(HTTPD)}",
        )
        async with cluster.client(0) as client:
            await client.post("/v1/networks", {"name": NETWORK})
            await client.post(
                "/v1/services",
                {
                    "name": SERVICE,
                    "image": IMAGE,
                    "networks": [NETWORK],
                    "command": [
                        "sh",
                        "-c",
                        f"echo overlay > /tmp/index.html && exec {' '.join(HTTPD)}",
                    ],
                    "constraints": [f"node.hostname=={h1.name}"],
                    "stop_delay": "0s",
                },
            )
            vip = (await client.get(f"/v1/networks/{NETWORK}"))["vips"][SERVICE]

        async def one_task() -> list[str]:
            found = await tasks_behind_vip(cluster, 0)
            return found if len(found) == 1 else []

        (address,) = await wait_for(one_task, timeout=90, what="web behind its VIP")
        urls = {
            "vip": f"http://{vip}/index.html",
            "overlay": f"http://{address}/index.html",
            "underlay": f"http://{h1.address}:{UNDERLAY_PORT}/index.html",
        }
        runs: dict[str, list[dict[str, float]]] = {t: [] for t in TARGETS}
        joins, deaths = [], []
        for number in range(args.runs):
            for target in TARGETS:  # interleaved, so drift hits the three alike
                runs[target].append(await asyncio.to_thread(wrk, h0, urls[target], args))
            joins.append(await new_task_behind_vip(cluster, hosts))
            deaths.append(await dead_task_out_of_vip(cluster, hosts))
            await scale(cluster, 1)
            await wait_for(one_task, timeout=60, what="web back to one task")
            print(f"run {number + 1}/{args.runs} done", flush=True)
        return report(args, runs, joins, deaths)
    finally:
        await asyncio.to_thread(hosts.__exit__, None, None, None)


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def report(args, runs, joins, deaths) -> dict:
    figures = {
        t: {
            k: round(statistics.median(r[k] for r in runs[t]), 3)
            for k in ("rps", "p50_ms", "p99_ms")
        }
        for t in TARGETS
    }
    print(
        f"\nwrk -t1 -c{args.connections} -d{args.duration}s from h0 to web on h1; medians of {args.runs}"
    )
    for target in TARGETS:
        f = figures[target]
        print(
            f"{target:9} {f['rps']:>9.0f} req/s  p50 {f['p50_ms']:.3f} ms  p99 {f['p99_ms']:.3f} ms"
        )
    vip_vs_overlay = figures["vip"]["rps"] / figures["overlay"]["rps"]
    overlay_vs_underlay = figures["overlay"]["rps"] / figures["underlay"]["rps"]
    join, death = _spread(joins), _spread(deaths)
    print(f"VIP {vip_vs_overlay:.2f}x overlay; overlay {overlay_vs_underlay:.2f}x underlay")
    print(
        f"new task behind the VIP: {join['median']:.3f} s; dead task out of every VIP: {death['median']:.3f} s"
    )
    targets_met = {
        "vip_ge_0.9x_overlay": vip_vs_overlay >= 0.9,
        "overlay_ge_0.8x_underlay": overlay_vs_underlay >= 0.8,
        "new_task_le_1s": join["median"] <= 1.0,
        "dead_task_le_3s": death["median"] <= 3.0,
    }
    print("targets:", ", ".join(f"{k}={v}" for k, v in targets_met.items()))
    return {
        "runs": args.runs,
        "duration_s": args.duration,
        "connections": args.connections,
        **figures,
        "vip_vs_overlay": round(vip_vs_overlay, 3),
        "overlay_vs_underlay": round(overlay_vs_underlay, 3),
        "new_task_behind_vip_s": join,
        "dead_task_out_of_vip_s": death,
        "targets_met": targets_met,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"bench.overlay needs the multi-host bed: {reason}")
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        raise SystemExit("bench.overlay needs wrk (apt-get install wrk)")
    result = asyncio.run(run(args))
    print("RESULT " + json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
