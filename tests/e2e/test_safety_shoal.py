"""The safety check against real Shoal nodes, each on a host of its own (a network namespace),
while faults run: concurrent clients write node labels and read them through every node, a
sampler asks every node who leads which term, a replicated service runs its tasks as
processes. Afterwards the checker proves that no acknowledged write was lost, no term had two
leaders, no node's reads went backwards, every key's history is linearizable (WGL), and the
service is back to its replica count with no slot running twice, both in the cluster state and
in the processes really running. The history is checked in every run: a node that does not
catch up after a fault (a known bug) ends the faults and is reported as an expected failure
only after the checks passed.

The default run plays each fault once (leader kill -9 and restart, leader cut off, a minority
cut off, a rolling restart of every node); a test of its own stalls a follower's event loop
past --voter-grace while its Raft thread runs (it needs cgroup v1's freezer). `pytest -m
chaos` plays random faults on five nodes for SHOAL_CHAOS_SECONDS (default 300);
SHOAL_CHAOS_SEED replays one fault order.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import aiohttp
import pytest

from node.client import Unreachable
from node.devcluster.localcluster import wait_for
from tests.netbed import Faults, NetBed
from tests.netbed.bed import Host
from tests.netbed.stall import unsupported as stall_unsupported
from tests.safety.checker import (
    Violation,
    lost_writes,
    not_linearizable,
    reads_going_backwards,
    replica_violations,
    split_brain,
)
from tests.safety.harness import Workload, run_clients, sample_leaders
from tests.safety.history import History, HistoryRecorder, Operation, OpKind, Outcome
from tests.safety.shoal_bed import API_PORT, RECOVERY_TIMEOUT, BedCluster, NotCaughtUp
from tests.safety.shoal_client import label_keys
from tests.support import unavailable

pytestmark = pytest.mark.e2e

SERVICE = {
    "name": "safety-sleepers",
    "image": "process",
    "command": ["sleep", "3600"],
    "replicas": 3,
}
HOLD = 2.0  # seconds a fault stays on after the cluster reacted to it, with clients running
CALM = 1.0  # seconds of clients alone before, between and after the faults
# The nodes' --voter-grace: short, so that a stalled voter stays down for longer than it.
VOTER_GRACE = 2.0
BED_ARGS = ("--voter-grace", str(VOTER_GRACE))
# After the last fault healed, the cluster accepts a write with every voter back within this.
RECOVERY_S = 10.0

# A known bug (in pysyncobj's transport), reported as an expected failure only after the
# history passed every check, so that it stays visible without hiding anything else.
STUCK_BUG = (
    "known bug: after a restart or a healed partition, a node stayed without a Raft "
    "connection to one peer and did not catch up"
)


# -- faults: each one injects, waits for the cluster to act on it, holds, heals, recovers ------
Scenario = Callable[[BedCluster, Faults, random.Random], Awaitable[None]]


async def kill_and_restart_leader(cluster: BedCluster, faults: Faults, rng: random.Random) -> None:
    old = await cluster.wait_leader()
    await asyncio.to_thread(faults.kill, cluster.processes[old])
    await cluster.wait_leader([n for n in cluster.names if n != old])
    await asyncio.sleep(HOLD)
    await cluster.start(old)
    await cluster.wait_caught_up(old)


async def _cut_off(cluster: BedCluster, faults: Faults, victim: str, leader_moves: bool) -> None:
    await asyncio.to_thread(faults.isolate, cluster.hosts[victim])
    if leader_moves:
        await cluster.wait_leader([n for n in cluster.names if n != victim])
    await asyncio.sleep(HOLD)
    await asyncio.to_thread(faults.heal)
    await cluster.wait_caught_up(victim)


async def isolate_leader(cluster: BedCluster, faults: Faults, rng: random.Random) -> None:
    await _cut_off(cluster, faults, await cluster.wait_leader(), leader_moves=True)


async def isolate_follower(cluster: BedCluster, faults: Faults, rng: random.Random) -> None:
    leader = await cluster.wait_leader()
    victim = rng.choice([n for n in cluster.names if n != leader])
    await _cut_off(cluster, faults, victim, leader_moves=False)


async def rolling_restart(cluster: BedCluster, faults: Faults, rng: random.Random) -> None:
    for name in cluster.names:
        await cluster.restart(name, graceful=True)


async def pause_leader(cluster: BedCluster, faults: Faults, rng: random.Random) -> None:
    """SIGSTOP the leader until the others elect another; resumed, it must step down."""
    old = await cluster.wait_leader()
    await asyncio.to_thread(faults.pause, cluster.processes[old])
    await cluster.wait_leader([n for n in cluster.names if n != old])
    await asyncio.sleep(HOLD)
    await asyncio.to_thread(faults.heal)
    await cluster.wait_caught_up(old)


async def _raft_bytes_sent(host: Host) -> int:
    """Bytes this host's Raft connections have sent and had acknowledged (kernel counters)."""
    port = f"( sport = :{API_PORT + 1} or dport = :{API_PORT + 1} )"
    done = await asyncio.to_thread(host.run, ["ss", "-tinH", port])
    return sum(int(n) for n in re.findall(r"\bbytes_acked:(\d+)", done.stdout))


async def stall_follower_loop(cluster: BedCluster, faults: Faults, rng: random.Random) -> None:
    """A follower's event loop stalls for longer than --voter-grace while its Raft thread runs
    (the loop thread frozen where it waits: tests.netbed.stall), so the leader sees it down
    past its grace; thawed, it keeps its seat or takes one again, and catches up."""
    leader = await cluster.wait_leader()
    victim = rng.choice([n for n in cluster.names if n != leader])
    await asyncio.to_thread(faults.stall_loop, cluster.processes[victim])

    async def seen_down() -> bool:
        (row,) = [n for n in await cluster.api.nodes(leader) if n["name"] == victim]
        return row["status"] != "ready"

    await wait_for(seen_down, timeout=RECOVERY_TIMEOUT, what=f"{leader} to see {victim} down")
    with pytest.raises(Unreachable):  # its API is stalled too
        await cluster.api.nodes(victim)
    sent = await _raft_bytes_sent(cluster.hosts[victim])
    await asyncio.sleep(VOTER_GRACE + HOLD)
    assert await _raft_bytes_sent(cluster.hosts[victim]) > sent, "its Raft thread stalled too"
    await asyncio.to_thread(faults.heal)
    await recovered(cluster, f"stall.{victim}")
    await cluster.wait_caught_up(victim)


async def recovered(cluster: BedCluster, label: str) -> float:
    """Seconds until a write commits and every node counts every node a voter again (as
    many as a 3-node cluster has); raises after RECOVERY_S."""
    started = time.monotonic()

    async def accepts_writes() -> bool:
        leader = await cluster.wait_leader()
        await cluster.api.set_labels(leader, leader, {label: "yes"})
        voters = [len((await cluster.api.cluster(n))["voters"]) for n in cluster.names]
        return all(count == len(cluster.names) for count in voters)

    await wait_for(accepts_writes, timeout=RECOVERY_S, what="a write and every node a voter")
    return time.monotonic() - started


async def leader_cannot_send(cluster: BedCluster, faults: Faults, rng: random.Random) -> None:
    """The leader hears everyone but reaches no one: the others elect a new leader whose
    higher term must depose the old one."""
    old = await cluster.wait_leader()
    others = [n for n in cluster.names if n != old]
    await asyncio.to_thread(
        faults.one_way, [cluster.hosts[old]], [cluster.hosts[n] for n in others]
    )
    await cluster.wait_leader(others)
    await asyncio.sleep(HOLD)
    await asyncio.to_thread(faults.heal)
    await cluster.wait_caught_up(old)


async def lossy_node(cluster: BedCluster, faults: Faults, rng: random.Random) -> None:
    victim = rng.choice(cluster.names)
    await asyncio.to_thread(faults.loss, cluster.hosts[victim], 30)
    await asyncio.sleep(2 * HOLD)
    await asyncio.to_thread(faults.heal)
    await cluster.wait_caught_up(victim)


async def kill_and_restart_any(cluster: BedCluster, faults: Faults, rng: random.Random) -> None:
    await cluster.restart(rng.choice(cluster.names), graceful=False)


ISSUE_SCENARIOS: tuple[Scenario, ...] = (
    kill_and_restart_leader,
    isolate_leader,
    isolate_follower,
    rolling_restart,
)
CHAOS_SCENARIOS: tuple[Scenario, ...] = ISSUE_SCENARIOS + (
    pause_leader,
    leader_cannot_send,
    stall_follower_loop,
    lossy_node,
    kill_and_restart_any,
)


# -- recording and checking --------------------------------------------------------------------
async def record_under_faults(
    cluster: BedCluster,
    bed: NetBed,
    workload: Workload,
    next_scenario: Callable[[], Scenario | None],
) -> tuple[History, NotCaughtUp | None]:
    """Clients and the leader sampler run while scenarios run one after another until
    `next_scenario` gives None; then the final state is read. A node that did not catch up
    after a fault ends the faults early; the history so far is returned with it, to be
    checked all the same."""
    api, recorder, stop = cluster.api, HistoryRecorder(), asyncio.Event()
    rng = random.Random(workload.seed)
    stuck: NotCaughtUp | None = None
    with Faults(bed) as faults:
        async with asyncio.TaskGroup() as group:
            group.create_task(sample_leaders(cluster.names, api.leader_status, recorder, stop))
            group.create_task(
                run_clients(cluster.names, api.write, api.read, workload, recorder, stop)
            )
            try:
                await asyncio.sleep(CALM)
                while (scenario := next_scenario()) is not None:
                    print(f"{time.monotonic():.3f} fault: {scenario.__name__}")
                    await scenario(cluster, faults, rng)
                    await asyncio.sleep(CALM)
            except NotCaughtUp as exc:
                stuck = exc
            finally:
                stop.set()
    final = await cluster.final_state(workload.keys, agree=stuck is None)
    return recorder.history(final), stuck


async def wait_service_converged(cluster: BedCluster) -> None:
    """The service runs its replica count with no slot twice, in the leader's state and in
    the task processes on the hosts."""
    desired = {SERVICE["name"]: SERVICE["replicas"]}

    async def converged() -> bool:
        problems = replica_violations(
            await cluster.tasks_in_state(SERVICE["name"]), desired
        ) + replica_violations(await cluster.tasks_on_hosts(SERVICE["name"]), desired)
        assert not problems, _listed(problems)
        return True

    await wait_for(converged, timeout=RECOVERY_TIMEOUT, what=f"{desired} running, each slot once")


def per_process(
    operations: Sequence[Operation], starts: Mapping[str, Sequence[float]]
) -> tuple[Operation, ...]:
    """The operations with each node renamed after the process that served it ("n1#2" is n1's
    third process), so a per-node check becomes a check per process lifetime."""

    def lifetime(op: Operation) -> int:
        return bisect.bisect_right(starts[op.node], op.invoked_at) - 1

    return tuple(dataclasses.replace(op, node=f"{op.node}#{lifetime(op)}") for op in operations)


def _listed(violations: Sequence[Violation | str], limit: int = 30) -> str:
    more = f"\n... and {len(violations) - limit} more" if len(violations) > limit else ""
    return "\n".join(str(v) for v in violations[:limit]) + more


def check(history: History, cluster: BedCluster) -> None:
    ok = [op for op in history.operations if op.outcome is Outcome.OK]
    writes = sum(op.kind is OpKind.WRITE for op in ok)
    print(
        f"{len(history.operations)} operations, {len(ok)} ok ({writes} acknowledged writes), "
        f"{len(history.leaders)} leader reports, leaders seen in terms "
        f"{sorted({r.term for r in history.leaders if r.is_leader})}"
    )
    assert writes >= 100 and len(ok) - writes >= 100, "the clients got too little done to judge"
    failed = [
        f"{op.describe()}: {op.error}"
        for op in history.operations
        if op.error.startswith("ServerError")
    ]
    assert not failed, "nodes failed requests instead of refusing them:\n" + _listed(failed)
    lost = lost_writes(history.operations, history.final_state)
    assert not lost, _listed(lost)
    not_linear = not_linearizable(history.operations)
    assert not not_linear, _listed(not_linear)
    two_leaders = split_brain(history.leaders)
    assert not two_leaders, _listed(two_leaders)
    within_a_process = reads_going_backwards(per_process(history.operations, cluster.starts))
    assert not within_a_process, _listed(within_a_process)
    # A restarted node serves nothing older than before it stopped (it waits for its journal
    # and a leader), so reads through one node never go backwards, even across restarts.
    across_restarts = reads_going_backwards(history.operations)
    assert not across_restarts, _listed(across_restarts, 10)
    # Every node stopped within its grace on SIGTERM, even under load.
    assert not cluster.ignored_sigterm, f"ignored SIGTERM: {', '.join(cluster.ignored_sigterm)}"


async def check_safety(
    bed: NetBed, workdir: Path, workload: Workload, next_scenario: Callable[[], Scenario | None]
) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10.0)) as session:
        cluster = BedCluster(bed, workdir, session, extra_args=BED_ARGS)
        try:
            await cluster.form()
            await cluster.api.create_service(cluster.names[0], SERVICE)
            await wait_service_converged(cluster)
            history, stuck = await record_under_faults(cluster, bed, workload, next_scenario)
            # The history is checked whatever happened after it was recorded.
            check(history, cluster)
            if stuck is None:
                await wait_service_converged(cluster)
            crashed = cluster.crashed()
        finally:
            print(cluster.log_tails())  # pytest shows it when the test fails
    assert not crashed, f"nodes exited on their own: {crashed}"
    if stuck is not None:
        # Reported only after the history passed every check: a known failure hides nothing.
        pytest.xfail(f"{STUCK_BUG}:\n{stuck}")


def _workload(nodes: int, seed: int) -> Workload:
    # Many keys, so a lost write is rarely hidden by a later overwrite of its key; clients
    # stop when the faults are over, not after a count.
    # Keys enough that each one's history (checked on its own) stays short.
    keys = label_keys([f"n{i}" for i in range(nodes)], per_owner=96 // nodes)
    return Workload(
        clients=2 * nodes,
        ops_per_client=10**9,
        keys=keys,
        read_fraction=0.5,
        op_timeout=8.0,
        seed=seed,
        pause=0.01,
    )


@pytest.mark.timeout(300)
async def test_no_acknowledged_write_lost_no_split_brain_no_read_backwards(
    netbed_factory, tmp_path
):
    bed = netbed_factory(3)
    scenarios = iter(ISSUE_SCENARIOS)
    await check_safety(bed, tmp_path / "nodes", _workload(3, seed=1), lambda: next(scenarios, None))


@pytest.mark.timeout(240)
async def test_a_voter_whose_event_loop_stalls_past_its_grace_loses_nothing_and_keeps_its_seat(
    netbed_factory, tmp_path
):
    if why := stall_unsupported():
        unavailable(why)
    bed = netbed_factory(3)
    scenarios = iter([stall_follower_loop])
    await check_safety(bed, tmp_path / "nodes", _workload(3, seed=2), lambda: next(scenarios, None))


def _chaos_seconds() -> float:
    return float(os.environ.get("SHOAL_CHAOS_SECONDS", "300"))


@pytest.mark.chaos
@pytest.mark.timeout(_chaos_seconds() + 600)
async def test_chaos_soak_keeps_every_safety_property(netbed_factory, tmp_path):
    bed = netbed_factory(5)
    seed = int(os.environ.get("SHOAL_CHAOS_SEED", str(int(time.time()))))
    print(f"chaos seed {seed} (SHOAL_CHAOS_SEED={seed} replays this fault order)")
    rng = random.Random(seed)
    deadline = time.monotonic() + _chaos_seconds()

    def next_scenario() -> Scenario | None:
        return rng.choice(CHAOS_SCENARIOS) if time.monotonic() < deadline else None

    await check_safety(bed, tmp_path / "nodes", _workload(5, seed), next_scenario)
