"""The proxy data plane on every core: worker processes that each run a `ProxyDataPlane` with
SO_REUSEPORT listeners, so the kernel spreads new connections over all of them.

`WorkerPool.sync(ports, endpoints)` sends the whole table to every worker as one JSON line on
its stdin (level-triggered, like every sync, and numbered); a worker applies each line it
reads and writes back one JSON line with the number it applied, the ports it could not open
and its counters. A worker that dies is
started again with the latest table after `restart_delay`; the others keep their listeners
open meanwhile, so the port never stops accepting. A worker whose stdin closes (the node went
away) stops. Each worker balances over its own picker, so least-connections holds per worker:
with N workers each sees about 1/N of the connections.

    python -m netoverlay.lb.workers HOST   # one worker; the pool starts these itself
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass

from netoverlay.lb.proxy import ProxyConfig, ProxyDataPlane
from netoverlay.lb.stats import ServiceStats
from netoverlay.lb.types import Backend, ServicePort

log = logging.getLogger(__name__)

# A table line is bounded: far above any real cluster's table, far below a memory problem.
MAX_LINE = 64 << 20


def encode_table(
    ports: list[ServicePort], endpoints: dict[str, list[Backend]], number: int = 0
) -> bytes:
    plain = {
        "number": number,
        "ports": [dataclasses.asdict(p) for p in ports],
        "endpoints": {s: [dataclasses.asdict(e) for e in es] for s, es in endpoints.items()},
    }
    return json.dumps(plain, separators=(",", ":")).encode() + b"\n"


def decode_table(line: bytes) -> tuple[int, list[ServicePort], dict[str, list[Backend]]]:
    """The inverse of `encode_table`; the constructors validate every field."""
    plain = json.loads(line)
    ports = [ServicePort(**p) for p in plain["ports"]]
    endpoints = {s: [Backend(**e) for e in es] for s, es in plain["endpoints"].items()}
    return plain["number"], ports, endpoints


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What a worker answers to a table: its number, the ports it could not open, and the
    worker's counters."""

    applied: int
    failed_ports: dict[int, str]
    stats: dict[int, ServiceStats]


class _Worker:
    """One worker process and what it last reported."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.report = WorkerReport(-1, {}, {})
        self.answered = asyncio.Event()


class WorkerPool:
    """`count` worker processes serving the same ports with SO_REUSEPORT listeners."""

    def __init__(self, config: ProxyConfig, count: int = 0, *, restart_delay: float = 0.2) -> None:
        self.config = config
        self.count = count or os.cpu_count() or 1
        self.restart_delay = restart_delay
        self._number = 0
        self._table = encode_table([], {}, self._number)
        self._workers = [_Worker(i) for i in range(self.count)]
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self.restarts = 0
        # The last counters of workers that died: kept, so that totals never go backwards
        # (the autoscaler takes rates between two snapshots).
        self._departed: dict[int, ServiceStats] = {}

    async def start(self) -> None:
        for worker in self._workers:
            await self._spawn(worker)
            self._watchers.append(asyncio.create_task(self._watch(worker)))

    async def _spawn(self, worker: _Worker) -> None:
        worker.answered.clear()
        worker.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "netoverlay.lb.workers",
            self.config.host,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=MAX_LINE,
        )
        await self._send(worker, self._table)

    async def _send(self, worker: _Worker, table: bytes) -> None:
        process = worker.process
        if process is None or process.stdin is None or process.returncode is not None:
            return
        try:
            process.stdin.write(table)
            await process.stdin.drain()
        except (ConnectionError, BrokenPipeError):
            pass  # it died: the watcher restarts it with the latest table

    async def _watch(self, worker: _Worker) -> None:
        """Read the worker's reports; when it exits, start it again."""
        while True:
            process = worker.process
            assert process is not None and process.stdout is not None
            while line := await process.stdout.readline():
                worker.report = _decode_report(line)
                worker.answered.set()
            code = await process.wait()
            if self._stopping:
                return
            log.warning("lb worker %d exited with %s; restarting it", worker.index, code)
            self.restarts += 1
            self._departed = _sum([self._departed, worker.report.stats])
            worker.report = WorkerReport(-1, {}, {})
            await asyncio.sleep(self.restart_delay)
            await self._spawn(worker)

    async def sync(self, ports: list[ServicePort], endpoints: dict[str, list[Backend]]) -> None:
        """Give every worker the table and wait (up to stop_timeout) until each has applied
        it; one that has not by then (it is restarting) gets it when it starts."""
        self._number += 1
        self._table = encode_table(ports, endpoints, self._number)
        for worker in self._workers:
            await self._send(worker, self._table)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.stop_timeout):
                for worker in self._workers:
                    while worker.report.applied < self._number:
                        worker.answered.clear()
                        await worker.answered.wait()

    @property
    def failed_ports(self) -> dict[int, str]:
        failed: dict[int, str] = {}
        for worker in self._workers:
            failed.update(worker.report.failed_ports)
        return failed

    def stats(self) -> dict[int, ServiceStats]:
        """Each port's counters summed over the workers as of their last reports (a second
        old at most), those that died included; connections a worker took after its last
        report and before dying are not counted."""
        live = _sum([w.report.stats for w in self._workers])
        return {n: s for n, s in _sum([self._departed, live]).items() if n in live}

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process is not None]

    async def stop(self) -> None:
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        for worker in self._workers:
            process = worker.process
            if process is None or process.returncode is not None:
                continue
            if process.stdin is not None:
                process.stdin.close()  # the worker stops when its table ends
            try:
                await asyncio.wait_for(process.wait(), self.config.stop_timeout)
            except TimeoutError:
                process.kill()
                await process.wait()


def _sum(reports: list[dict[int, ServiceStats]]) -> dict[int, ServiceStats]:
    total: dict[int, ServiceStats] = {}
    for stats in reports:
        for number, s in stats.items():
            seen = total.get(number)
            total[number] = s if seen is None else _add(seen, s)
    return total


def _add(a: ServiceStats, b: ServiceStats) -> ServiceStats:
    return dataclasses.replace(
        a,
        at=max(a.at, b.at),
        connections_total=a.connections_total + b.connections_total,
        connections_active=a.connections_active + b.connections_active,
        bytes_in=a.bytes_in + b.bytes_in,
        bytes_out=a.bytes_out + b.bytes_out,
        connect_failures=a.connect_failures + b.connect_failures,
        rejected=a.rejected + b.rejected,
    )


def _encode_report(plane: ProxyDataPlane, applied: int) -> bytes:
    plain = {
        "applied": applied,
        "failed_ports": {str(n): r for n, r in plane.failed_ports.items()},
        "stats": [dataclasses.asdict(s) for s in plane.stats().values()],
    }
    return json.dumps(plain).encode() + b"\n"


def _decode_report(line: bytes) -> WorkerReport:
    plain = json.loads(line)
    stats = [ServiceStats(**s) for s in plain["stats"]]
    return WorkerReport(
        plain["applied"],
        {int(n): r for n, r in plain["failed_ports"].items()},
        {s.published_port: s for s in stats},
    )


async def serve(host: str) -> None:
    """One worker: apply each table read from stdin, answer with a report, report again every
    second (so the pool's counters stay fresh), stop at the end of stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    plane = ProxyDataPlane(ProxyConfig(host=host, reuse_port=True))
    applied = -1

    def report() -> None:
        sys.stdout.buffer.write(_encode_report(plane, applied))
        sys.stdout.flush()

    async def report_every_second() -> None:
        while True:
            await asyncio.sleep(1.0)
            report()

    reporter = asyncio.create_task(report_every_second())
    try:
        while line := await reader.readline():
            number, ports, endpoints = decode_table(line)
            await plane.sync(ports, endpoints)
            applied = number
            report()
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        await plane.stop()


def main() -> None:
    import uvloop

    uvloop.run(serve(sys.argv[1]))


if __name__ == "__main__":
    main()
