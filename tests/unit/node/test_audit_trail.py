"""The audit trail's loop against the real state machine: writes gathered into few commands,
kept through a lost quorum, bounded while none commits."""

from __future__ import annotations

import asyncio

import consensus  # noqa: F401  (registers commands and tables)
from consensus.audit import AUDIT, AuditEntry
from consensus.raft import NoQuorum
from consensus.state import ClusterState
from node.loops.audit import AuditTrail


def entry(i: int) -> AuditEntry:
    return AuditEntry(float(i), "local", "admin", "POST", f"/v1/services/s{i}", 201, f"s{i}")


async def test_a_burst_is_committed_in_few_commands_and_a_lost_quorum_loses_nothing():
    state, outages, commands = ClusterState(), [1], []

    async def submit(cmd):
        if outages[0]:
            outages[0] -= 1
            raise NoQuorum("no leader")
        commands.append(len(cmd.entries))
        return state.apply(cmd)

    trail = AuditTrail(submit, flush_delay=0.01, retry_delay=0.01)
    loop = asyncio.create_task(trail.run())
    try:
        for i in range(300):
            trail.record(entry(i))
        for _ in range(200):
            if len(state.table(AUDIT)) == 300:
                break
            await asyncio.sleep(0.01)
    finally:
        loop.cancel()
    assert commands == [256, 44]
    assert [row.resource for row in state.table(AUDIT).values()] == [f"s{i}" for i in range(300)]


async def test_while_nothing_commits_the_oldest_entries_go_first_and_are_counted():
    trail = AuditTrail(lambda cmd: None, limit=10)  # never run: nothing is committed
    for i in range(15):
        trail.record(entry(i))
    assert trail.dropped == 5
    assert [e.resource for e in trail.waiting] == [f"s{i}" for i in range(5, 15)]
