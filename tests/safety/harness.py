"""Concurrent clients that record a history against any key-value style API.

The API comes in as callables, so the same harness drives a toy server in the checker's own
tests and Shoal's HTTP API in the cluster tests:

    async def write(node, key, value) -> None         raise DefiniteFailure if surely not applied
    async def read(node, key) -> ReadResult            value (None: absent) and the node's index
    async def leader_status(node) -> (term, is_leader)

Any other exception, or no answer within `op_timeout`, records the outcome as UNKNOWN.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from tests.safety.history import HistoryRecorder, OpKind, Outcome


class DefiniteFailure(Exception):
    """The operation certainly did not take effect (for example, rejected before it was proposed)."""


@dataclass(frozen=True, slots=True)
class ReadResult:
    value: str | None
    seq: int  # the node's applied index (or state version) the read was served at


Write = Callable[[str, str, str], Awaitable[None]]
Read = Callable[[str, str], Awaitable[ReadResult]]
LeaderStatus = Callable[[str], Awaitable[tuple[int, bool]]]


@dataclass(frozen=True, slots=True)
class Workload:
    clients: int = 4
    ops_per_client: int = 50
    keys: tuple[str, ...] = ("k0", "k1", "k2")
    read_fraction: float = 0.5
    op_timeout: float = 2.0
    seed: int = 0
    # Seconds a client waits between its operations. A closed loop against a faster cluster
    # records a longer history, and checking it costs more than linearly.
    pause: float = 0.0


async def _one(
    recorder: HistoryRecorder, call: Awaitable, op_id: int, timeout: float, kind: OpKind
) -> None:
    try:
        result = await asyncio.wait_for(call, timeout)
    except DefiniteFailure as exc:
        recorder.complete(op_id, Outcome.FAIL, error=str(exc))
    except Exception as exc:  # anything else leaves the outcome open: the request may have landed
        recorder.complete(op_id, Outcome.UNKNOWN, error=f"{exc.__class__.__name__}: {exc}")
    else:
        if kind is OpKind.READ:
            recorder.complete(op_id, Outcome.OK, value=result.value, read_seq=result.seq)
        else:
            recorder.complete(op_id, Outcome.OK)


async def _client(
    index: int,
    node: str,
    write: Write,
    read: Read,
    workload: Workload,
    recorder: HistoryRecorder,
    stop: asyncio.Event,
) -> None:
    rng = random.Random(f"{workload.seed}-{index}")
    for count in range(workload.ops_per_client):
        if stop.is_set():
            return
        if count and workload.pause:
            await asyncio.sleep(workload.pause)
        key = rng.choice(workload.keys)
        if rng.random() < workload.read_fraction:
            op_id = recorder.invoke(index, node, OpKind.READ, key)
            await _one(recorder, read(node, key), op_id, workload.op_timeout, OpKind.READ)
        else:
            value = f"c{index}-{count}"  # unique per history: a final value names its writer
            op_id = recorder.invoke(index, node, OpKind.WRITE, key, value)
            await _one(recorder, write(node, key, value), op_id, workload.op_timeout, OpKind.WRITE)


async def run_clients(
    nodes: Sequence[str],
    write: Write,
    read: Read,
    workload: Workload,
    recorder: HistoryRecorder,
    stop: asyncio.Event | None = None,
    client_offset: int = 0,
) -> None:
    """Client i sticks to node i mod len(nodes), so every node serves a run of reads; returns
    when every client has done its operations or `stop` is set.

    Clients are numbered from `client_offset`: a second phase recorded into the same history
    needs new numbers, or its written values would repeat the first phase's.
    """
    stop = stop or asyncio.Event()
    async with asyncio.TaskGroup() as group:
        for index in range(workload.clients):
            group.create_task(
                _client(
                    client_offset + index,
                    nodes[index % len(nodes)],
                    write,
                    read,
                    workload,
                    recorder,
                    stop,
                )
            )


async def sample_leaders(
    nodes: Sequence[str],
    status: LeaderStatus,
    recorder: HistoryRecorder,
    stop: asyncio.Event,
    interval: float = 0.05,
    timeout: float = 1.0,
) -> None:
    """Ask every node who it thinks leads, every `interval`, until `stop` is set.

    Sampling is the only way in: a node does not announce its own stale belief of leadership,
    which is exactly what this looks for. Nodes that do not answer are skipped.
    """

    async def ask(node: str) -> None:
        try:
            term, is_leader = await asyncio.wait_for(status(node), timeout)
        except Exception:  # a dead or partitioned node has nothing to report
            return
        recorder.leader(node, term, is_leader)

    while not stop.is_set():
        await asyncio.gather(*(ask(node) for node in nodes))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
