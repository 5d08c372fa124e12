"""The checker on histories recorded from real processes: a 3-replica toy key-value store on
loopback, driven by the concurrent client harness through faults (kill -9, restart, failover).
The correct build passes; each deliberately broken build is caught by the check it breaks.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.netbed.process import HostProcess, spawn
from tests.safety.checker import check_history, lost_writes, reads_going_backwards, split_brain
from tests.safety.harness import DefiniteFailure, ReadResult, Workload, run_clients, sample_leaders
from tests.safety.history import HistoryRecorder

TOYKV = Path(__file__).with_name("toykv.py")
NODES = ("n0", "n1", "n2")
_ADDRESSES = itertools.count()


def _own_address(index: int) -> str:
    """A loopback address of this node's own (127.88.X.Y): a port picked on 127.0.0.1 can be
    taken by some other test's outgoing connection before the toy binds it."""
    block = (os.getpid() + index * 7919) % 250 + 1
    return f"127.88.{block}.{index % 250 + 1}"


class ToyCluster:
    """Three toy replicas as real processes; n0 starts as leader of term 1."""

    def __init__(
        self, workdir: Path, session: aiohttp.ClientSession, flags: dict[str, list[str]]
    ) -> None:
        self.workdir, self.session, self.flags = workdir, session, flags
        self.urls = {node: f"http://{_own_address(next(_ADDRESSES))}:8480" for node in NODES}
        self.processes: dict[str, HostProcess] = {}
        self.leader = "n0"

    def start(self, node: str) -> None:
        peers = ",".join(url for other, url in self.urls.items() if other != node)
        host, port = self.urls[node][len("http://") :].rsplit(":", 1)
        argv = [
            sys.executable,
            str(TOYKV),
            "--host",
            host,
            "--port",
            port,
            "--peers",
            peers,
            "--data",
            str(self.workdir / f"{node}.json"),
            *self.flags.get(node, []),
            *(["--leader"] if node == self.leader else []),
        ]
        process = spawn(argv, dict(os.environ), self.workdir / f"{node}.log", notify=True)
        process.wait_ready()
        self.processes[node] = process

    def kill(self, node: str) -> None:
        self.processes[node].kill()

    async def call(self, method: str, node: str, path: str, **kwargs) -> dict:
        async with self.session.request(method, self.urls[node] + path, **kwargs) as reply:
            body = await reply.json()
            if reply.status == 421:
                raise DefiniteFailure(body["error"])
            if reply.status != 200:
                raise RuntimeError(f"{node} {path}: {reply.status} {body}")
            return body

    async def fail_over(self, term: int) -> str:
        """Promote the survivor holding the longest log (Raft's election restriction)."""
        survivors = [node for node in NODES if self.processes[node].alive]
        seqs = {node: (await self.call("GET", node, "/status"))["seq"] for node in survivors}
        self.leader = max(survivors, key=lambda node: seqs[node])
        await self.call("POST", self.leader, "/promote", json={"term": term})
        return self.leader

    # The harness's callables. Writes go to the current leader, as a follower would forward them.
    async def write(self, node: str, key: str, value: str) -> None:
        await self.call("PUT", self.leader, f"/kv/{key}", data=value)

    async def read(self, node: str, key: str) -> ReadResult:
        body = await self.call("GET", node, f"/kv/{key}")
        return ReadResult(body["value"], body["seq"])

    async def status(self, node: str) -> tuple[int, bool]:
        body = await self.call("GET", node, "/status")
        return body["term"], body["leader"]

    async def final_state(self) -> dict[str, str]:
        return (await self.call("GET", self.leader, "/dump"))["data"]

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


@asynccontextmanager
async def toy_cluster(workdir: Path, flags: dict[str, list[str]] | None = None):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        cluster = ToyCluster(workdir, session, flags or {})
        try:
            await asyncio.gather(*(asyncio.to_thread(cluster.start, node) for node in NODES))
            yield cluster
        finally:
            await asyncio.to_thread(cluster.stop)


# Many keys, so a lost write is rarely hidden by a later overwrite of its key.
BEFORE = Workload(clients=3, ops_per_client=40, keys=tuple(f"k{i}" for i in range(60)), seed=1)
AFTER = Workload(clients=3, ops_per_client=10, keys=BEFORE.keys, seed=2)


async def _leader_kill_history(cluster: ToyCluster, new_term: int):
    """Clients run, the leader is killed with -9, a survivor is promoted, clients run again;
    leadership is sampled throughout."""
    recorder, stop = HistoryRecorder(), asyncio.Event()
    sampler = asyncio.create_task(sample_leaders(NODES, cluster.status, recorder, stop))
    try:
        await run_clients(NODES, cluster.write, cluster.read, BEFORE, recorder)
        # Ask the two leaders themselves at the moments that matter, besides the periodic
        # sampling, which a short phase can slip between.
        recorder.leader(cluster.leader, *await cluster.status(cluster.leader))
        cluster.kill(cluster.leader)
        new_leader = await cluster.fail_over(new_term)
        recorder.leader(new_leader, *await cluster.status(new_leader))
        await run_clients(
            NODES, cluster.write, cluster.read, AFTER, recorder, client_offset=BEFORE.clients
        )
    finally:
        stop.set()
        await sampler
    return recorder.history(await cluster.final_state())


async def test_correct_replication_survives_a_leader_kill(tmp_path):
    async with toy_cluster(tmp_path) as cluster:
        history = await _leader_kill_history(cluster, new_term=2)
    assert sum(op.outcome.value == "ok" for op in history.operations) > 100, "the run did work"
    assert check_history(history) == []


async def test_acking_before_replication_loses_acknowledged_writes(tmp_path):
    broken = {node: ["--ack-before-replicate"] for node in NODES}
    async with toy_cluster(tmp_path, broken) as cluster:
        history = await _leader_kill_history(cluster, new_term=2)
    lost = lost_writes(history.operations, history.final_state)
    assert lost and {v.check for v in lost} == {"lost-write"}, lost
    assert split_brain(history.leaders) == []


async def test_reusing_a_term_at_failover_is_two_leaders_in_one_term(tmp_path):
    async with toy_cluster(tmp_path) as cluster:
        history = await _leader_kill_history(cluster, new_term=1)
    violations = split_brain(history.leaders)
    assert [v.subject for v in violations] == ["term 1"], violations
    assert lost_writes(history.operations, history.final_state) == []


async def _restart_history(cluster: ToyCluster):
    """Clients read through n2, n2 is killed -9 and restarted, clients read through it again."""
    recorder = HistoryRecorder()
    readers = Workload(clients=3, ops_per_client=30, keys=("a", "b"), read_fraction=0.5, seed=3)
    await run_clients(NODES, cluster.write, cluster.read, readers, recorder)
    cluster.kill("n2")
    await asyncio.to_thread(cluster.start, "n2")
    only_reads = Workload(clients=3, ops_per_client=5, keys=("a", "b"), read_fraction=1.0, seed=4)
    await run_clients(
        ("n2",), cluster.write, cluster.read, only_reads, recorder, client_offset=readers.clients
    )
    return recorder.history(await cluster.final_state())


async def test_a_node_that_restarts_with_its_state_keeps_reads_monotonic(tmp_path):
    async with toy_cluster(tmp_path) as cluster:
        history = await _restart_history(cluster)
    assert check_history(history) == []


async def test_a_node_that_forgets_its_state_on_restart_makes_reads_go_backwards(tmp_path):
    async with toy_cluster(tmp_path, {"n2": ["--volatile"]}) as cluster:
        history = await _restart_history(cluster)
    backwards = reads_going_backwards(history.operations)
    assert backwards and {v.subject for v in backwards} == {"n2"}, backwards
