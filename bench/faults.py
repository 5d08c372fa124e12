"""Fault runs: real Shoal nodes on the network-namespace test bed, every run checked for safety.

    python -m bench.faults [--runs 20] [--kinds leader-kill,partition,one-way,pause,stall,restart]
                           [--seed N]

Per fault kind, one 3-node cluster on a bed of its own plays the fault --runs times. Each run
records a history of its own (clients writing and reading node labels through every node, on
keys of that run alone, and a sampler asking every node who leads which term) around one
fault, and passes when the checker of tests/safety finds no lost acknowledged write, no
illegal (non-linearizable) history, no term with two leaders and no read going backwards,
and the cluster then accepts a write within 10 s with 3 voters on every node.

    leader-kill  kill -9 of the leader, restarted once another leads
    partition    the leader cut off from the others, then healed
    one-way      the leader hears the others but reaches none of them, then healed
    pause        SIGSTOP of the leader until another leads, then SIGCONT
    stall        a follower's event loop frozen (its Raft thread runs) until the leader has
                 seen it down for longer than --voter-grace, then thawed
    restart      every node restarted in turn (SIGTERM, then start from its data dir)

Prints a line per run and ends with `RESULT {json}`: per kind, runs, passed, and why each
failed run failed. Needs root (network namespaces) and nftables; it is in no test run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.test_safety_shoal import (
    BED_ARGS,
    Scenario,
    check,
    isolate_leader,
    kill_and_restart_leader,
    leader_cannot_send,
    pause_leader,
    record_under_faults,
    recovered,
    rolling_restart,
    stall_follower_loop,
)
from tests.netbed import NetBed
from tests.safety.harness import Workload
from tests.safety.history import History
from tests.safety.shoal_bed import BedCluster
from tests.safety.shoal_client import label_keys

NODES = 3
KINDS: dict[str, Scenario] = {
    "leader-kill": kill_and_restart_leader,
    "partition": isolate_leader,
    "one-way": leader_cannot_send,
    "pause": pause_leader,
    "stall": stall_follower_loop,
    "restart": rolling_restart,
}
# The linearizability search is exponential at worst (many writes of unknown outcome on one
# key): a run whose check takes longer is reported undecided, not passed.
CHECK_BUDGET_S = 60.0


def _workload(run: int, seed: int) -> Workload:
    # Keys of this run alone: its history starts from keys no earlier run wrote.
    # As the safety test's: keys enough, and a pause between a client's operations, so that
    # each key's history (checked on its own) stays short enough to decide.
    keys = label_keys([f"n{i}" for i in range(NODES)], per_owner=32, prefix=f"fault.r{run}.k")
    return Workload(
        clients=2 * NODES,
        ops_per_client=10**9,
        keys=keys,
        read_fraction=0.5,
        op_timeout=8.0,
        seed=seed + run,
        pause=0.01,
    )


def _check_in_child(history: History, cluster: Any, verdict: Any) -> None:
    try:
        check(history, cluster)
    except AssertionError as exc:
        verdict.put(f"AssertionError: {str(exc)[:300]}")
    else:
        verdict.put("")


async def _checked(history: History, cluster: BedCluster) -> str:
    """check() in a child process, so that a search over its budget can be ended."""
    context = multiprocessing.get_context("fork")
    verdict = context.Queue()
    # What check() reads of the cluster: when each node's processes started, and which
    # ignored SIGTERM.
    seen = types.SimpleNamespace(starts=cluster.starts, ignored_sigterm=cluster.ignored_sigterm)
    child = context.Process(target=_check_in_child, args=(history, seen, verdict))
    child.start()
    await asyncio.to_thread(child.join, CHECK_BUDGET_S)
    if child.is_alive():
        child.kill()
        child.join()
        return f"undecided: the check took over {CHECK_BUDGET_S:g} s"
    return str(verdict.get(timeout=5))


async def _one_run(
    cluster: BedCluster, bed: NetBed, scenario: Scenario, run: int, seed: int
) -> str:
    """'' when the run passed, otherwise why it failed."""
    once = iter([scenario])
    try:
        history, stuck = await record_under_faults(
            cluster, bed, _workload(run, seed), lambda: next(once, None)
        )
        why = await _checked(history, cluster)
        if why:
            return why
        if stuck is not None:
            return f"a node did not catch up: {stuck}"
        await recovered(cluster, f"fault.r{run}.done")
    except (AssertionError, TimeoutError, RuntimeError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    crashed = cluster.crashed()
    return f"nodes exited on their own: {crashed}" if crashed else ""


async def _kind(kind: str, runs: int, seed: int, workdir: Path) -> dict:
    failures: list[str] = []
    bed = NetBed.create(NODES, workdir=workdir / f"bed-{kind}")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10.0)) as session:
            cluster = BedCluster(bed, workdir / f"nodes-{kind}", session, extra_args=BED_ARGS)
            await cluster.form()
            for run in range(runs):
                started = time.monotonic()
                why = await _one_run(cluster, bed, KINDS[kind], run, seed)
                verdict = "pass" if not why else f"FAIL {why}"
                print(
                    f"{kind} run {run + 1}/{runs}: {verdict} ({time.monotonic() - started:.1f} s)"
                )
                sys.stdout.flush()
                if why:
                    failures.append(f"run {run + 1}: {why}")
                    if cluster.crashed():
                        break  # the bed cannot go on without its nodes
    finally:
        bed.close()
    return {"runs": runs, "passed": runs - len(failures), "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=20, help="runs of each fault kind")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds")
    parser.add_argument("--seed", type=int, default=None, help="replays the clients' choices")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or args.runs < 1:
        parser.error(
            f"--kinds: unknown {unknown} (known: {', '.join(KINDS)})"
            if unknown
            else "--runs must be at least 1"
        )
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    print(f"seed {seed} (--seed {seed} replays the clients' choices)")
    results = {}
    with tempfile.TemporaryDirectory(prefix="shoal-faults-") as base:
        for kind in kinds:
            results[kind] = asyncio.run(_kind(kind, args.runs, seed, Path(base)))
    print("RESULT " + json.dumps({"nodes": NODES, "seed": seed, "kinds": results}))


if __name__ == "__main__":
    main()
