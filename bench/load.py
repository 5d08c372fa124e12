"""The load both control-plane benchmarks (Shoal and etcd) put on a cluster, so that their
figures come from the same client: one aiohttp session, N concurrent writers, and sequential
linearizable reads sent to a follower."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp

from bench.stats import percentile, print_figures, summarize_runs

# One committed write: (session, a number unique to this write) -> was it acknowledged?
Write = Callable[[aiohttp.ClientSession, int], Awaitable[bool]]
# One linearizable read, the same shape: (session, a number) -> was it answered?
Read = Write


async def throughput(write: Write, clients: int, seconds: float) -> float:
    """Acknowledged writes per second with `clients` writers for `seconds`."""
    counter = itertools.count()
    done = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                if await write(session, next(counter)):
                    done += 1

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        return done / (time.monotonic() - started)


async def latency(write: Write | Read, count: int, what: str = "write") -> list[float]:
    """Milliseconds of `count` sequential writes (or reads) at low load; a refusal is an error."""
    samples = []
    async with aiohttp.ClientSession() as session:
        for n in range(count):
            started = time.perf_counter()
            if not await write(session, n):
                raise RuntimeError(f"{what} {n} was refused at low load")
            samples.append((time.perf_counter() - started) * 1000)
    return samples


# A failover attempt starts this often, each with its own client timeout (WRITE_TIMEOUT).
ATTEMPT_EVERY = 0.05
FAILOVER_LIMIT = 60.0
WRITE_TIMEOUT = aiohttp.ClientTimeout(total=2)


async def first_commit_after(fault: Callable[[], None], write: Write) -> float:
    """Seconds from `fault()` to the first write acknowledged, both systems alike.

    A write sent to a survivor that still follows a dead or paused leader can hang until its
    timeout, so attempts start every ATTEMPT_EVERY seconds (`write` spreads them over the
    survivors by their number) and the first one to succeed ends the clock: the figure is
    never a multiple of the client's timeout."""
    committed = asyncio.Event()
    done_at: list[float] = []
    async with aiohttp.ClientSession(timeout=WRITE_TIMEOUT) as session:

        async def attempt(n: int) -> None:
            try:
                if await write(session, n) and not done_at:
                    done_at.append(time.monotonic())
                    committed.set()
            except (TimeoutError, aiohttp.ClientError):
                pass

        started = time.monotonic()
        fault()
        async with asyncio.TaskGroup() as group:
            for n in itertools.count():
                group.create_task(attempt(n))
                try:
                    await asyncio.wait_for(committed.wait(), ATTEMPT_EVERY)
                    break
                except TimeoutError:
                    if time.monotonic() - started > FAILOVER_LIMIT:
                        raise RuntimeError(
                            f"no write committed {FAILOVER_LIMIT:g} s after the fault"
                        ) from None
    return done_at[0] - started


def figures_of_run(
    samples: list[float], reads: list[float], rate: float, paused_s: float, killed_s: float
) -> dict[str, float]:
    """One run's control-plane figures, named alike for Shoal and etcd: `samples` are write
    latencies, `reads` those of linearizable reads on a follower; `paused_s` and `killed_s`
    the failover after the leader's SIGSTOP and its kill -9."""
    return {
        "writes_per_s": rate,
        "p50_ms": statistics.median(samples),
        "p99_ms": percentile(samples, 0.99),
        "read_p50_ms": statistics.median(reads),
        "read_p99_ms": percentile(reads, 0.99),
        "paused_failover_s": paused_s,
        "failover_s": killed_s,
    }


def run_control_plane(
    prog: str,
    title: str,
    one_run: Callable[..., Awaitable[dict]],
    result: dict,
    targets: dict[str, str] | None = None,
) -> None:
    """The command line both control-plane benchmarks share: parse the sizes, run
    `one_run(clients, seconds, latency_writes)` --runs times, print and emit RESULT."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--latency-writes", type=int, default=300, help="sequential writes, and as many reads"
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke-test size")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds, args.latency_writes = 1, 1.0, 50
    runs = []
    for i in range(args.runs):
        run = asyncio.run(one_run(args.clients, args.seconds, args.latency_writes))
        runs.append(run)
        print(
            f"run {i + 1}: {run['writes_per_s']:8.0f} writes/s ({args.clients} clients)   "
            f"p50 {run['p50_ms']:.2f} ms  p99 {run['p99_ms']:.2f} ms   "
            f"follower read p50 {run['read_p50_ms']:.2f} ms  p99 {run['read_p99_ms']:.2f} ms   "
            f"failover paused {run['paused_failover_s']:.2f} s  "
            f"killed {run['failover_s']:.2f} s",
            flush=True,
        )
    figures = summarize_runs(runs)
    print_figures(title, figures, args.runs, targets)
    print("RESULT " + json.dumps({**result, "clients": args.clients, "runs": args.runs, **figures}))
