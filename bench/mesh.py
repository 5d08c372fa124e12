"""Service discovery on a real cluster: how soon every node's routing mesh follows a change.

    python -m bench.mesh [--runs 3] [--dataplane proxy|nft]

Each run starts 3 nodes on loopback (process runtime), waits until they are 3 voters alive in
gossip, creates a 2-replica HTTP service kept off n3, then measures, by polling every node's `GET /v1/mesh` every 20 ms (what its data plane
was actually given, not just its table):
- create: POST the service -> every node serves 2 endpoints (includes process start and
  the first passing health check, 0.2 s interval);
- withdraw: SIGKILL of one replica's process -> no node routes to it any more (the agent's
  observation -> gossip tombstone -> every node's data plane);
- scale: PATCH replicas 2 -> 3 -> every node serves the new replica;
- rejoin: SIGTERM of n2, start again -> n2 serves the 3 endpoints again.
Medians with min-max over the runs; ends with one `RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

from node.localcluster import LocalCluster
from node.runtime import ProcessDriver
from node.runtime.process_records import load_record

PUBLISHED = 18090
SERVER = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers()\n"
    "    def log_message(self, *a): pass\n"
    "http.server.ThreadingHTTPServer(('', int(os.environ['PORT'])), H).serve_forever()\n"
)
SPEC = {
    "name": "web",
    "image": "process",
    "command": [sys.executable, "-c", SERVER],
    "replicas": 2,
    "ports": [f"{PUBLISHED}:8000"],
    "constraints": ["node.hostname!=n3"],
    "health": {"kind": "http", "interval": "0.2s", "timeout": "1s"},
    "restart": {"delay": "5s"},
    "stop_grace_period": "1s",
}


async def served(cluster: LocalCluster, i: int) -> set[str]:
    """The endpoints node i's data plane serves for the published port."""
    for port in (await cluster.get(i, "/v1/mesh"))["serving"]:
        if port["published_port"] == PUBLISHED:
            return set(port["endpoints"])
    return set()


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> float:
    """Seconds until `check` holds, polling every 20 ms."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def everywhere(cluster: LocalCluster, test: Callable[[set[str]], bool]) -> bool:
    return all([test(await served(cluster, i)) for i in range(3) if cluster.nodes[i].running])


async def healthy(cluster: LocalCluster) -> list[dict]:
    return [
        t
        for t in await cluster.get(0, "/v1/tasks?service=web")
        if t["desired"] == "running" and t["state"] == "running" and t["health"] == "healthy"
    ]


async def _count_healthy(cluster: LocalCluster, count: int) -> bool:
    return len(await healthy(cluster)) == count


def endpoint(task: dict) -> str:
    binding = task["endpoint"]["ports"][0]
    return f"{task['endpoint']['address']}:{binding['host_port']}"


async def one_run(dataplane: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as base:
        cluster = LocalCluster(base, 3, ["--runtime", "process", "--lb-dataplane", dataplane])
        try:
            await cluster.start()
            await until(lambda: _settled(cluster), "a settled cluster", timeout=90)
            figures = {}
            start = time.monotonic()
            async with cluster.nodes[0].client() as client:
                await client.post("/v1/services", SPEC)
            await until(lambda: everywhere(cluster, lambda s: len(s) == 2), "create")
            figures["create_s"] = time.monotonic() - start

            # The mesh may serve a replica before its report is committed: wait for the state.
            await until(lambda: _count_healthy(cluster, 2), "2 healthy tasks in the state")
            (victim, *_) = await healthy(cluster)
            names = {n["id"]: n["name"] for n in await cluster.get(0, "/v1/nodes")}
            holder = next(n for n in cluster.nodes if n.name == names[victim["node_id"]])
            record = load_record(holder.data_dir, victim["id"])
            assert record is not None
            gone = endpoint(victim)
            os.kill(record.pid, signal.SIGKILL)
            figures["withdraw_s"] = await until(
                lambda: everywhere(cluster, lambda s: gone not in s), "withdraw"
            )

            await until(lambda: everywhere(cluster, lambda s: len(s) == 2), "replacement")
            before = await served(cluster, 0)
            async with cluster.nodes[0].client() as client:
                await client.patch("/v1/services/web", {"replicas": 3})
                figures["scale_s"] = await until(
                    lambda: everywhere(cluster, lambda s: len(s - before) == 1 and len(s) == 3),
                    "scale",
                )

            n2 = cluster.nodes[1]
            n2.stop()
            await until(lambda: everywhere(cluster, lambda s: len(s) >= 1), "leave")
            n2.start()
            figures["rejoin_s"] = await until(lambda: _rejoined(cluster), "rejoin")
            return figures
        finally:
            cluster.stop()
            for node in cluster.nodes:
                driver = ProcessDriver(node.data_dir)
                for seen in await driver.list_owned():
                    await driver.remove(seen.task_id)


async def _settled(cluster: LocalCluster) -> bool:
    """Three voters and every node alive in gossip: no promotion left to disturb a figure."""
    members = (await cluster.get(0, "/v1/cluster/members"))["members"]
    voters = (await cluster.get(0, "/v1/cluster"))["voters"]
    return sum(m["state"] == "alive" for m in members) == 3 and len(voters) == 3


async def _rejoined(cluster: LocalCluster) -> bool:
    try:
        mine = await served(cluster, 1)
    except Exception:  # still starting: its API does not answer yet
        return False
    wanted = {endpoint(t) for t in await healthy(cluster)}
    return len(wanted) == 3 and mine == wanted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dataplane", choices=("proxy", "nft"), default="proxy")
    args = parser.parse_args()
    runs = [asyncio.run(one_run(args.dataplane)) for _ in range(args.runs)]
    summary = {}
    print(
        f"{'figure':<12} {'median s':>9} {'min-max s':>14}   ({args.runs} runs, {args.dataplane})"
    )
    for key in runs[0]:
        values = [r[key] for r in runs]
        summary[key] = {
            "median": round(statistics.median(values), 3),
            "min": round(min(values), 3),
            "max": round(max(values), 3),
        }
        print(
            f"{key:<12} {summary[key]['median']:>9.3f} "
            f"{summary[key]['min']:>6.3f}-{summary[key]['max']:<6.3f}"
        )
    print(
        "RESULT "
        + json.dumps({"bench": "mesh", "dataplane": args.dataplane, "runs": args.runs, **summary})
    )


if __name__ == "__main__":
    main()
