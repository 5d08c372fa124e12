"""Scheduler throughput: pure placements per second, and assignments committed through Raft.

    python -m bench.scheduler --nodes 5000 --tasks 100000 [--services 100] [--runs 3]
    python -m bench.scheduler --e2e [--quick] [--probe-api]

The cluster has `--nodes` nodes in four zones, `--services` replicated services sharing
`--tasks` tasks; a quarter of the services carry a zone constraint, a quarter spread over
zones. Each pure run reconciles (creating the pending tasks) and then times `place` alone,
from a fresh node view, by wall clock and by the thread's CPU time (which other load on the
machine does not inflate).

With `--e2e` each run also starts a fresh 3-node cluster of real `shoal node` processes,
commits the simulated nodes into its replicated state (`RegisterNode` through the leader's
internal propose endpoint: the API has no bulk way to fake nodes, nor should it), creates the
services through `POST /v1/services`, and times the first create until `GET /v1/services`
counts every task assigned: committed_per_s = tasks / that time. The simulated nodes live at
127.1.x.y, where nothing listens, and are unknown to gossip, so liveness leaves them ready;
every service is constrained to them, so the real nodes' agents never start a task.
It also measures the state snapshot Raft writes at log compaction (the msgpack of the whole
state) at this size. With `--probe-api`, while the round is created and applied, clients
read a small part of the state (`GET /v1/networks`) from the leader and from a follower at a
steady rate, and the latency of those reads is reported (p50, p99, max): a linearizable read
(the default) waits for a read barrier to commit behind the round's entries; a stale one
(`?stale=1`) only for whatever else holds the node. Medians of the runs; the last line is
`RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import glob
import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable

import aiohttp

import consensus  # noqa: F401  (registers commands and tables)
from bench.stats import percentile
from consensus import codec
from consensus.model import ClusterInfo, Node, Resources
from consensus.nodes import NODES, RegisterNode
from consensus.services import parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import SERVICES, TASKS, Service
from node.devcluster.localcluster import LocalCluster, auth_for, ssl_for
from scheduler.placement import place
from scheduler.reconcile import reconcile
from scheduler.rounds import schedule
from scheduler.view import StateView

ZONES = ("a", "b", "c", "d")
# Only simulated nodes carry it: no real node of the e2e cluster can take a bench task.
SIMULATED = "node.labels.sim==yes"
# Registrations in flight at once; the leader batches nothing, so more only queue.
REGISTER_CONCURRENCY = 64
CREATE_CONCURRENCY = 4
CREATE_ATTEMPTS = 5
REGISTER_ATTEMPTS = 5
POLL_INTERVAL = 0.2
# Readers per probed node and kind of read, each sending a GET every so many seconds (or,
# behind, as soon as the last answered). A read's latency counts from when it was due, so a
# stall counts against every read it held up, not just the one it caught. A linearizable read
# commits a barrier through Raft: asked for more often, they would only queue up.
PROBE_READERS = 2
PROBES = {"linearizable": ("/v1/networks", 1.0), "stale": ("/v1/networks?stale=1", 0.05)}


def simulated_node(i: int) -> Node:
    # 127.1.0.0/16 is loopback that no LocalCluster block uses: nothing ever answers there.
    return Node(
        f"sim{i:05d}",
        f"sim{i:05d}",
        f"127.1.{i // 250}.{i % 250 + 1}",
        7420,
        7421,
        7422,
        labels={"zone": ZONES[i % len(ZONES)], "sim": "yes"},
        resources=Resources(16_000, 64 << 30),
    )


def service_plains(
    n_tasks: int,
    n_services: int,
    constraints: tuple[str, ...] = (),
    cpu: str = "100m",
    memory: str = "128Mi",
) -> list[dict]:
    """The services' specs as an API client sends them."""
    plains = []
    per_service, extra = divmod(n_tasks, n_services)
    for s in range(n_services):
        plain = {
            "name": f"svc{s}",
            "image": "busybox",
            "replicas": per_service + (s < extra),
            "resources": {"reservations": {"cpu": cpu, "memory": memory}},
            "constraints": list(constraints),
        }
        if s % 4 == 1:
            plain["constraints"].append(f"node.labels.zone!={ZONES[s % len(ZONES)]}")
        elif s % 4 == 2:
            plain["preferences"] = ["spread=node.labels.zone"]
        plains.append(plain)
    return plains


def cluster(n_nodes: int, n_tasks: int, n_services: int, strategy: str) -> StateView:
    nodes = {node.id: node for node in map(simulated_node, range(n_nodes))}
    specs = [parse_service_spec(p) for p in service_plains(n_tasks, n_services)]
    services = {spec.name: Service(f"id{s}", spec) for s, spec in enumerate(specs)}
    return StateView(ClusterInfo(strategy=strategy), nodes, services, {})


def run_once(view: StateView, seed: int) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds of this thread, placed, unplaceable) of one `place` call."""
    counter = itertools.count()
    plan = reconcile(view, 0.0, lambda: f"t{next(counter)}")
    start, start_cpu = time.perf_counter(), time.thread_time()
    result = place(view, plan.create, seed)
    cpu = time.thread_time() - start_cpu
    return time.perf_counter() - start, cpu, len(result.placements), len(result.unplaceable)


def pure(args: argparse.Namespace) -> tuple[float, float]:
    view = cluster(args.nodes, args.tasks, args.services, args.strategy)
    rates, cpu_rates = [], []
    for run in range(args.runs):
        elapsed, cpu, placed, unplaceable = run_once(view, seed=run)
        rates.append(placed / elapsed)
        cpu_rates.append(placed / cpu)
        print(
            f"run {run + 1}: placed {placed} tasks ({unplaceable} unplaceable) on {args.nodes} nodes "
            f"in {elapsed:.3f} s = {placed / elapsed:,.0f} placements/s "
            f"({cpu:.3f} s CPU = {placed / cpu:,.0f}/s)"
        )
    median, median_cpu = statistics.median(rates), statistics.median(cpu_rates)
    # Wall clock is the figure; CPU time shows what other load on the machine took away.
    print(
        f"median of {args.runs} runs: {median:,.0f} placements/s wall clock, "
        f"{median_cpu:,.0f}/s by CPU time (target >= 20,000)",
        flush=True,
    )
    return median, median_cpu


# -- the snapshot Raft writes at log compaction ---------------------------------------------


def snapshot_figures(n_nodes: int, n_tasks: int, n_services: int) -> dict:
    """Size and cost of the state snapshot once every task is assigned, built in this process
    by the same scheduling rounds the leader runs and applied by the real state machine."""
    state, apply_s = assigned_state(n_nodes, n_tasks, n_services)
    assigned = sum(t.state == "assigned" for t in state.table(TASKS).values())
    started = time.perf_counter()
    data = state.to_msgpack()
    serialize_s = time.perf_counter() - started
    started = time.perf_counter()
    ClusterState.from_msgpack(data)
    restore_s = time.perf_counter() - started
    return {
        "tasks_assigned": assigned,
        "apply_s": apply_s,
        "snapshot_bytes": len(data),
        "serialize_s": serialize_s,
        "restore_s": restore_s,
    }


def assigned_state(n_nodes: int, n_tasks: int, n_services: int) -> tuple[ClusterState, float]:
    """A state of simulated nodes and services with every task assigned, and the seconds
    applying the assignments took."""
    state = ClusterState()
    state.table(NODES).update((n.id, n) for n in map(simulated_node, range(n_nodes)))
    for s, plain in enumerate(service_plains(n_tasks, n_services, (SIMULATED,), "10m", "16Mi")):
        spec = parse_service_spec(plain)
        state.table(SERVICES)[spec.name] = Service(f"id{s}", spec)
    counter = itertools.count()
    apply_s = 0.0
    while True:
        command = schedule(
            StateView.capture(state), 0.0, state.applied, lambda: f"t{next(counter):06d}"
        ).command
        if not command.assign:
            break
        started = time.perf_counter()
        state.apply(command)
        apply_s += time.perf_counter() - started
    return state, apply_s


# -- end to end, through a real cluster --------------------------------------------------------


async def register_simulated(cluster: LocalCluster, count: int) -> float:
    """Commit `count` simulated nodes through the leader; returns the seconds it took.
    A registration that meets an election is sent again, to the new leader, with the same
    request id (the state machine applies a request id once)."""
    gate = asyncio.Semaphore(REGISTER_CONCURRENCY)
    # Raw commands are for nodes alone: the first node's token and key.
    headers = {**cluster.nodes[0].node_headers, "Content-Type": "application/msgpack"}
    now = time.time()
    leader = [cluster.nodes[await cluster.leader_index()].api]

    async def register(session: aiohttp.ClientSession, i: int) -> None:
        node = dataclasses.replace(simulated_node(i), joined_at=now, status_changed_at=now)
        data = codec.encode(RegisterNode(node), f"bench-register-{i}")
        for _ in range(REGISTER_ATTEMPTS):
            api = leader[0]
            async with (
                gate,
                session.post(
                    f"https://{api}/v1/internal/propose",
                    headers=headers,
                    data=data,
                    ssl=ssl_for(api),
                ) as resp,
            ):
                body = await resp.json()
            if resp.status == 200 and body["result"][0]:
                return
            if resp.status not in (421, 503):  # 421 not the leader, 503 no quorum in time
                break
            if leader[0] == api:
                leader[0] = cluster.nodes[await cluster.leader_index()].api
        raise RuntimeError(f"registering {node.name} failed: {resp.status} {body}")

    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(register(session, i) for i in range(count)))
    return time.perf_counter() - started


async def assigned_count(session: aiohttp.ClientSession, api: str) -> int | None:
    """Tasks assigned so far; None while the node cannot confirm a read (503: an election)."""
    async with session.get(f"https://{api}/v1/services", ssl=ssl_for(api)) as resp:
        rows = await resp.json()
    if resp.status == 503:
        return None
    if resp.status != 200:
        raise RuntimeError(f"GET /v1/services on {api}: {resp.status} {rows}")
    return sum(row["replicas"]["states"].get("assigned", 0) for row in rows)


async def create_and_wait(
    leader_api: str, watch_api: str, plains: list[dict], timeout: float
) -> dict:
    """Create the services and wait until every task is assigned; times both."""
    total = sum(p["replicas"] for p in plains)
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), headers=auth_for(leader_api)
    ) as session:

        async def create(plain: dict) -> None:
            for attempt in range(CREATE_ATTEMPTS):
                async with (
                    gate,
                    session.post(
                        f"https://{leader_api}/v1/services", json=plain, ssl=ssl_for(leader_api)
                    ) as resp,
                ):
                    answer = f"{resp.status} {await resp.text()}"
                # A 409 after a 503: the attempt that timed out did commit after all.
                if resp.status == 201 or (resp.status == 409 and attempt > 0):
                    return
                if resp.status != 503:  # 503: not committed in time (an election); retry
                    break
            raise RuntimeError(f"creating {plain['name']}: {answer}")

        started = time.perf_counter()
        await asyncio.gather(*(create(p) for p in plains))
        created_s = time.perf_counter() - started
        assigned = 0
        while (elapsed := time.perf_counter() - started) < timeout:
            assigned = await assigned_count(session, watch_api) or assigned
            if assigned >= total:
                return {"created_s": created_s, "assigned_s": elapsed, "tasks": total}
            await asyncio.sleep(POLL_INTERVAL)
    raise RuntimeError(f"only {assigned} of {total} tasks assigned after {timeout:g} s")


async def e2e_run(args: argparse.Namespace, plains: list[dict]) -> dict:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as base:
        cluster = LocalCluster(base, 3, ["--runtime", "process"])
        try:
            await cluster.start()

            await cluster.wait_voters(3)
            register_s = await register_simulated(cluster, args.nodes)
            leader = await cluster.leader_index()
            leader_api = cluster.nodes[leader].api
            watch_api = cluster.nodes[(leader + 1) % 3].api
            term = (await cluster.get(leader, "/v1/cluster"))["term"]
            cpu = _cpu_seconds(cluster)
            work = create_and_wait(leader_api, watch_api, plains, timeout=args.timeout)
            if args.probe_api:
                follower_api = cluster.nodes[(leader + 2) % 3].api
                run, probe = await probed(
                    {
                        f"{role} {kind}": (api, *probe)
                        for role, api in (("leader", leader_api), ("follower", follower_api))
                        for kind, probe in PROBES.items()
                    },
                    work,
                )
                run["api_probe"] = probe
            else:
                run = await work
            # On a shared machine wall time includes others' load; CPU time does not.
            run["cluster_cpu_s"] = _cpu_seconds(cluster) - cpu
            # A term change means an election: something stalled Raft past its timeout.
            elections = (await cluster.get(leader, "/v1/cluster"))["term"] - term
            run.update(register_s=register_s, elections=elections, dump_bytes=_largest_dump(base))
        finally:
            cluster.stop()
    return run


async def probed(
    targets: dict[str, tuple[str, str, float]], work: Awaitable[dict]
) -> tuple[dict, dict]:
    """Run `work` while PROBE_READERS clients per target (name -> API address, path and
    interval) read the state; returns the work's result and, per target, the reads' latency."""
    latencies: dict[str, list[float]] = {name: [] for name in targets}
    sessions = {
        name: aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120), headers=auth_for(api))
        for name, (api, _path, _interval) in targets.items()
    }

    async def reader(name: str) -> None:
        api, path, interval = targets[name]
        due = time.perf_counter()
        while True:
            await asyncio.sleep(due - time.perf_counter())
            async with sessions[name].get(f"https://{api}{path}", ssl=ssl_for(api)) as resp:
                await resp.read()
            latencies[name].append(time.perf_counter() - due)
            due += interval

    readers = [
        asyncio.ensure_future(reader(name)) for name in targets for _ in range(PROBE_READERS)
    ]
    try:
        result = await work
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for session in sessions.values():
            await session.close()
    return result, {name: _latency_figures(values) for name, values in latencies.items()}


def _latency_figures(seconds: list[float]) -> dict:
    if not seconds:
        return {"reads": 0}
    return {
        "reads": len(seconds),
        "p50_ms": round(percentile(seconds, 0.5) * 1e3, 1),
        "p99_ms": round(percentile(seconds, 0.99) * 1e3, 1),
        "max_ms": round(max(seconds) * 1e3, 1),
    }


def _cpu_seconds(cluster: LocalCluster) -> float:
    """CPU time the cluster's processes have used so far (user + system)."""
    total = 0
    for node in cluster.nodes:
        with open(f"/proc/{node.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def _largest_dump(base: str) -> int | None:
    """Size of the biggest compaction dump (gzip of pysyncobj's pickle frame) on disk."""
    sizes = [os.path.getsize(p) for p in glob.glob(os.path.join(base, "*", "raft", "*.dump"))]
    return max(sizes) if sizes else None


async def e2e(args: argparse.Namespace) -> list[dict]:
    plains = service_plains(args.tasks, args.services, (SIMULATED,), "10m", "16Mi")
    runs = []
    for i in range(args.runs):
        run = await e2e_run(args, plains)
        runs.append(run)
        print(
            f"e2e run {i + 1}: {args.nodes} simulated nodes registered in "
            f"{run['register_s']:.1f} s ({args.nodes / run['register_s']:,.0f}/s); "
            f"{len(plains)} services created in {run['created_s']:.2f} s; "
            f"{run['tasks']} tasks assigned in {run['assigned_s']:.2f} s = "
            f"{run['tasks'] / run['assigned_s']:,.0f} committed/s; "
            f"cluster CPU {run['cluster_cpu_s']:.1f} s; elections {run['elections']}; "
            f"compaction dump {run['dump_bytes']} B",
            flush=True,
        )
        for name, figures in run.get("api_probe", {}).items():
            print(f"  GET /v1/networks, {name}, during the round: {figures}", flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--strategy", choices=("spread", "binpack"), default="spread")
    parser.add_argument(
        "--e2e",
        action="store_true",
        help="also commit the assignments through Raft on a real 3-node cluster",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke-test size: 500 nodes, 10,000 tasks, one run"
    )
    parser.add_argument(
        "--probe-api",
        action="store_true",
        help="with --e2e: the latency of API reads while the round applies",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds an e2e run may take to assign every task",
    )
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.tasks, args.runs = 500, 10_000, 1
    placements, placements_cpu = pure(args)
    result = {
        "nodes": args.nodes,
        "tasks": args.tasks,
        "services": args.services,
        "strategy": args.strategy,
        "runs": args.runs,
        "placements_per_s": round(placements),
        "placements_per_s_cpu": round(placements_cpu),
        "committed_per_s": None,
    }
    if args.e2e:
        runs = asyncio.run(e2e(args))
        committed = statistics.median(r["tasks"] / r["assigned_s"] for r in runs)
        snapshot = snapshot_figures(args.nodes, args.tasks, args.services)
        print(
            f"snapshot at {snapshot['tasks_assigned']} assigned tasks: "
            f"{snapshot['snapshot_bytes'] / 1e6:.1f} MB msgpack, serialized in "
            f"{snapshot['serialize_s']:.2f} s (at compaction, in the forked child: off the Raft thread), "
            f"restored in {snapshot['restore_s']:.2f} s; "
            f"applying every round took {snapshot['apply_s']:.2f} s in all"
        )
        print(f"\n{'':24s}{'this run':>14s}{'target':>12s}")
        print(f"{'placements/s (pure)':24s}{placements:14,.0f}{'>= 20,000':>12s}")
        print(f"{'committed/s (Raft)':24s}{committed:14,.0f}{'>= 3,750':>12s}")
        result.update(
            committed_per_s=round(committed),
            committed_per_s_runs=[round(r["tasks"] / r["assigned_s"]) for r in runs],
            register_per_s=round(statistics.median(args.nodes / r["register_s"] for r in runs)),
            cluster_cpu_s=[round(r["cluster_cpu_s"], 1) for r in runs],
            # Load-independent: assignments per CPU-second all three nodes spent together.
            committed_per_cpu_s=round(
                statistics.median(r["tasks"] / r["cluster_cpu_s"] for r in runs)
            ),
            elections=[r["elections"] for r in runs],
            compaction_dump_bytes=[r["dump_bytes"] for r in runs],
            **({"api_probe": [r["api_probe"] for r in runs]} if args.probe_api else {}),
            snapshot_bytes=snapshot["snapshot_bytes"],
            snapshot_serialize_s=round(snapshot["serialize_s"], 3),
            snapshot_restore_s=round(snapshot["restore_s"], 3),
            state_apply_s=round(snapshot["apply_s"], 3),
        )
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
