"""Members at scale: a real 3-voter cluster and N lightweight members following its feed.

    python -m bench.members [--members 100,1000] [--processes 4] [--idle 15] [--quick] [--no-load]

Each simulated member is the node's own feed follower (node.feed.member.FeedMember, applying
every commit with the voters' state machine) without the rest of a node; they run many per
process, authenticated as one of the voters (the feed checks the caller is a node of the
cluster). Per size: the leader's CPU while idle, sequential write p50/p99 through the leader,
the time until 99 % and 100 % of members applied a commit (median over the probes; from the
probe's write, and how much of it the write itself took until the leader answered), the same
99 % while 10 writes a second go on (a voter sends a frame at most every frame interval), the
leader's CPU under 100 writes a second, the feed's bytes per second per member while idle,
and the voters' resident memory. Ends with one `RESULT {json}` line. All of it shares this machine's cores: the members run at the lowest
CPU priority (nice 19), so that they take what the voters leave, as on machines of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import queue
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from bench.stats import percentile
from node.client import ShoalClient
from node.devcluster.localcluster import EQUAL_PROCESS_NODES, LocalCluster, NodeProc, wait_for

PROBES = 5
WRITES = 100
BUSY_WRITES = 100
LAG_WRITES = 10
# The result's keys for the figures under writes (bench.report reads them).
BUSY_CPU_KEY = f"leader_cpu_{BUSY_WRITES}_writes_per_s_pct"
LAG_KEY = f"applied_99pct_under_{LAG_WRITES}_writes_per_s_ms"
PROBE_LABEL = "bench.probe"
TICKS = os.sysconf("SC_CLK_TCK")


class _CountingClient(ShoalClient):
    """A node's client that counts the feed bytes it receives."""

    received = 0

    async def stream_chunks(
        self, path: str, params: dict[str, str], *, read_timeout: float
    ) -> AsyncIterator[bytes]:
        async for chunk in super().stream_chunks(path, params, read_timeout=read_timeout):
            _CountingClient.received += len(chunk)
            yield chunk


def _worker(
    first: int,
    count: int,
    apis: list[str],
    owner: str,
    auth: dict,
    ca: bytes,
    commands: Any,
    answers: Any,
) -> None:
    # The lowest priority: members stand for other machines, so the voters go first on the
    # cores they share here (their applies still take what CPU the voters leave).
    os.nice(19)
    asyncio.run(_members(first, count, apis, owner, auth, ca, commands, answers))


async def _members(
    first: int,
    count: int,
    apis: list[str],
    owner: str,
    auth: dict,
    ca: bytes,
    commands: Any,
    answers: Any,
) -> None:
    from node.feed.member import FeedMember
    from node.pki.contexts import client_context

    context = client_context(ca)
    probe: dict[str, Any] = {"tag": None, "seen": {}}
    followers: list[FeedMember] = []
    clients: list[ShoalClient] = []
    sessions: list[aiohttp.ClientSession] = []

    def watcher(index: int):
        def notify() -> None:
            if probe["tag"] is None or index in probe["seen"] or index >= len(followers):
                return
            with followers[index].version as state:
                node = state.table("nodes").get(owner)
            if node is not None and node.labels.get(PROBE_LABEL) == probe["tag"]:
                probe["seen"][index] = time.time()

        return notify

    for i in range(count):
        # Each member from an address of its own, as real ones are: a voter admits at most
        # 256 connections from one address (node.api.listen).
        number = first + i
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                ssl=context, local_addr=(f"127.77.{number // 250}.{number % 250 + 1}", 0)
            ),
            timeout=aiohttp.ClientTimeout(total=10.0),
        )
        client = _CountingClient(apis[0], headers=auth, ssl_context=context, session=session)
        clients.append(client)
        sessions.append(session)
        followers.append(
            FeedMember(
                [],
                watcher(i),
                node_id=f"sim-{first + i}",
                remembered_apis=lambda: apis,
                client_at=lambda api, c=client: _bound(c, api),
                unsupported=lambda: None,
            )
        )
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, commands.get)
        kind = command[0]
        if kind == "ready":
            try:
                await wait_for(
                    lambda: _all_caught_up(followers), timeout=300, what="members to catch up"
                )
            except AssertionError as exc:
                answers.put(("failed", str(exc)))
            else:
                answers.put(("ready", first))
        elif kind == "bytes":
            answers.put(("bytes", _CountingClient.received))
        elif kind == "arm":  # before the probe's write, so no member applies it unseen
            probe["tag"], probe["seen"] = command[1], {}
            answers.put(("armed", first))
        elif kind == "collect":
            deadline = loop.time() + 30
            while len(probe["seen"]) < count and loop.time() < deadline:
                await asyncio.sleep(0.01)
            answers.put(("probe", list(probe["seen"].values())))
        else:
            for follower in followers:
                follower.stop()
            for session in sessions:
                await session.close()
            answers.put(("stopped", first))
            return


def _bound(client: ShoalClient, api: str) -> ShoalClient:
    """One client (one connection) per member, pointed at the voter it asks for."""
    client.base = f"https://{api}"
    return client


async def _all_caught_up(followers: list) -> bool:
    return all(f.progress().caught_up for f in followers)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def _cpu_share(node: NodeProc, seconds: float) -> float:
    """The share of a core `node` used over the next `seconds`."""
    cpu, started = _cpu_seconds(node.proc.pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (_cpu_seconds(node.proc.pid) - cpu) / (time.monotonic() - started)


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Members:
    """The simulated members, spread over worker processes."""

    def __init__(self, count: int, processes: int, voters: list[NodeProc], owner: str) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.answers = spawn.Queue()
        self.commands = []
        self.procs = []
        per = math.ceil(count / processes) if count else 0
        with open(voters[0].ca_file, "rb") as f:
            ca = f.read()
        apis = [v.api for v in voters]
        for first in range(0, count, per or 1):
            commands = spawn.Queue()
            proc = spawn.Process(
                target=_worker,
                args=(
                    first,
                    min(per, count - first),
                    apis,
                    owner,
                    voters[0].node_headers,
                    ca,
                    commands,
                    self.answers,
                ),
                daemon=True,
            )
            proc.start()
            self.commands.append(commands)
            self.procs.append(proc)

    async def ask(self, *command: Any, timeout: float = 600) -> list[Any]:
        """Every worker's answer to `command`, waited for off the event loop."""
        for commands in self.commands:
            commands.put(command)
        answers = []
        for _ in self.commands:
            kind, answer = await asyncio.to_thread(self.answers.get, timeout=timeout)
            if kind == "failed":
                raise RuntimeError(f"a members' process failed: {answer}")
            answers.append(answer)
        return answers

    async def stop(self) -> None:
        with contextlib.suppress(queue.Empty, RuntimeError):
            await self.ask("stop", timeout=30)
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


async def _writes(leader: NodeProc, owner: str) -> list[float]:
    latencies = []
    async with leader.client() as client:
        for i in range(WRITES):
            started = time.perf_counter()
            await client.patch(f"/v1/nodes/{owner}", {"add_labels": {"bench.w": str(i)}})
            latencies.append(time.perf_counter() - started)
    return latencies


async def measure(
    cluster: LocalCluster, count: int, processes: int, idle: float, load: bool = True
) -> dict:
    voters = cluster.nodes
    owner = (await cluster.get(0, "/v1/nodes"))[0]["id"]
    members = _Members(count, processes, voters, owner)
    try:
        await members.ask("ready")
        await asyncio.sleep(2)
        leader = voters[await cluster.leader_index()]
        received, started = sum(await members.ask("bytes")), time.monotonic()
        leader_cpu = await _cpu_share(leader, idle)
        elapsed = time.monotonic() - started
        idle_bytes = (sum(await members.ask("bytes")) - received) / elapsed / max(count, 1)
        writes = await _writes(leader, owner)
        spreads_99, spreads_all, acks = await _probes(members, leader, owner, count)
        # The same while writes go on: a voter then sends a frame at most every
        # node.feed.serve.frame_interval, so a commit may wait for its frame's turn. At a rate
        # the simulated members keep up with on this machine's cores (each write is an apply
        # per member: 1,000 members at 100 writes/s would need several cores to themselves).
        busy_99: list[float] = []
        leader_busy: float | None = None
        if load:
            async with _writing(leader, owner, LAG_WRITES):
                await asyncio.sleep(1)
                busy_99, _, _ = await _probes(members, leader, owner, count)
            # Last, as the members may fall behind it: the leader's CPU under 100 writes/s.
            async with _writing(leader, owner, BUSY_WRITES):
                await asyncio.sleep(1)
                leader_busy = await _cpu_share(leader, idle)
        return {
            "members": count,
            "leader_cpu_idle_pct": round(leader_cpu * 100, 2),
            BUSY_CPU_KEY: (None if leader_busy is None else round(leader_busy * 100, 2)),
            "write_p50_ms": round(percentile(writes, 0.5) * 1000, 2),
            "write_p99_ms": round(percentile(writes, 0.99) * 1000, 2),
            "applied_99pct_ms": _median_ms(spreads_99),
            "applied_100pct_ms": _median_ms(spreads_all),
            LAG_KEY: _median_ms(busy_99),
            # Of those times, the probe's own write until the leader answered it.
            "probe_write_ms": _median_ms(acks),
            "idle_bytes_per_s_per_member": round(idle_bytes, 1) if count else None,
            "voter_rss_mib": [round(_rss_mib(v.proc.pid), 1) for v in voters],
        }
    finally:
        await members.stop()


async def _probes(
    members: _Members, leader: NodeProc, owner: str, count: int
) -> tuple[list[float], list[float], list[float]]:
    """Per probe write: the time until 99 % and until all members applied it, and the write's
    own time until the leader answered."""
    spreads_99, spreads_all, acks = [], [], []
    for probe in range(PROBES):
        tag = f"p{probe}-{time.time()}"
        await members.ask("arm", tag)
        async with leader.client() as client:
            sent = time.time()
            await client.patch(f"/v1/nodes/{owner}", {"add_labels": {PROBE_LABEL: tag}})
            acks.append(time.time() - sent)
        seen = sorted(t - sent for answer in await members.ask("collect") for t in answer)
        if count and len(seen) == count:
            spreads_99.append(seen[max(0, math.ceil(0.99 * count) - 1)])
            spreads_all.append(seen[-1])
    return spreads_99, spreads_all, acks


@contextlib.asynccontextmanager
async def _writing(leader: NodeProc, owner: str, rate: float) -> AsyncIterator[None]:
    """`rate` writes a second through the leader for as long as the block runs (each
    sent on time, or at once after a late one: the writes do not pile up)."""

    async def write_on() -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        async with leader.client() as client:
            for i in itertools.count():
                await client.patch(f"/v1/nodes/{owner}", {"add_labels": {"bench.busy": str(i)}})
                due = max(due + 1 / rate, loop.time())
                await asyncio.sleep(due - loop.time())

    writer = asyncio.ensure_future(write_on())
    try:
        yield
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


def _median_ms(values: list[float]) -> float | None:
    return round(percentile(values, 0.5) * 1000, 1) if values else None


async def run(sizes: list[int], processes: int, idle: float, load: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as base:
        cluster = LocalCluster(base, 3, EQUAL_PROCESS_NODES)
        try:
            await cluster.start()
            await cluster.wait_voters(3)
            rows = []
            for count in sizes:
                row = await measure(cluster, count, processes, idle, load)
                print(
                    f"{row['members']:>6} members: leader idle {row['leader_cpu_idle_pct']} % CPU "
                    f"({row[BUSY_CPU_KEY]} % under {BUSY_WRITES} "
                    "writes/s), "
                    f"write p50 {row['write_p50_ms']} ms p99 {row['write_p99_ms']} ms, applied on "
                    f"99 % {row['applied_99pct_ms']} ms / 100 % {row['applied_100pct_ms']} ms "
                    f"(the write itself {row['probe_write_ms']} ms; under {LAG_WRITES} writes/s 99 % "
                    f"{row[LAG_KEY]} ms), "
                    f"idle {row['idle_bytes_per_s_per_member']} B/s per member, "
                    f"voter RSS {row['voter_rss_mib']} MiB",
                    flush=True,
                )
                rows.append(row)
            return {"sizes": rows}
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.members")
    parser.add_argument("--members", default="0,100,1000", help="sizes, comma-separated")
    parser.add_argument("--processes", type=int, default=4, help="processes the members run in")
    parser.add_argument("--idle", type=float, default=15.0, help="seconds of idle measurement")
    parser.add_argument("--quick", action="store_true", help="a small smoke-test size")
    parser.add_argument(
        "--no-load",
        action="store_true",
        help="skip the phases under 10 and 100 writes/s: each simulated member holds a full "
        "copy of the state, and 5,000 of them outgrow 20 GB within a few thousand writes",
    )
    args = parser.parse_args()
    sizes = [int(x) for x in args.members.split(",")]
    if args.quick:
        sizes, args.processes, args.idle = [0, 20], 2, 5.0
    if any(n < 0 for n in sizes) or args.processes < 1:
        parser.error("--members are counts >= 0 and --processes at least 1")
    result = asyncio.run(run(sizes, args.processes, args.idle, not args.no_load))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
