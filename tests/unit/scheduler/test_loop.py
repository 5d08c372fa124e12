"""The leader loop against the real state machine: a proposer that applies each command to a
ClusterState (what Raft does once committed) and sets the loop's `changed` event."""

from __future__ import annotations

import asyncio
import time

import pytest

from consensus.nodes import SetNodeStatus
from consensus.state import Result
from consensus.tasks import AssignTasks, ReportTaskStatus, TaskReport, tasks
from scheduler.loop import SchedulerLoop, random_ids
from scheduler.view import StateView
from tests.unit.scheduler.helpers import Cluster

pytestmark = pytest.mark.timeout(30)


class Harness:
    def __init__(self, cluster: Cluster, leader: bool = True, propose=None) -> None:
        self.cluster = cluster
        self.leader = leader
        self.changed = asyncio.Event()
        self.applied = asyncio.Condition()
        self.proposals: list[AssignTasks] = []
        self.fail_next = 0
        self.loop = SchedulerLoop(
            read_state=lambda: StateView.capture(cluster.state),
            changed=self.changed,
            propose=propose or self.propose,
            is_leader=lambda: self.leader,
            retry_delay=0.05,
        )

    async def propose(self, cmd: AssignTasks) -> Result:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("no quorum")
        self.proposals.append(cmd)
        return await self.commit(cmd)

    async def commit(self, cmd) -> Result:
        result = self.cluster.state.apply(cmd)
        self.changed.set()
        async with self.applied:
            self.applied.notify_all()
        return result

    async def until(self, predicate) -> None:
        async with self.applied:
            await self.applied.wait_for(predicate)

    def live(self):
        return self.cluster.live()


async def running(h: Harness):
    task = asyncio.create_task(h.loop.run())
    h.changed.set()
    return task


async def test_loop_assigns_then_reacts_to_a_node_going_down_and_stops():
    h = Harness(Cluster(3))
    h.cluster.create(name="web", replicas=4)
    runner = await running(h)
    await h.until(lambda: len(h.live()) == 4 and all(t.state == "assigned" for t in h.live()))
    assert len(h.proposals[0].create) == 4  # one batched command for the whole service
    victim = h.live()[0].node_id
    await h.commit(SetNodeStatus(victim, "down", time.time()))
    await h.until(lambda: all(t.node_id != victim and t.state == "assigned" for t in h.live()))
    await h.loop.stop(timeout=5)
    assert runner.done()


async def test_loop_does_nothing_until_it_leads():
    h = Harness(Cluster(2), leader=False)
    h.cluster.create(name="web", replicas=2)
    runner = await running(h)
    await asyncio.sleep(0)  # let it see the change while a follower
    for _ in range(3):
        h.changed.set()
        await asyncio.sleep(0.01)
    assert h.proposals == [] and not tasks(h.cluster.state)
    h.leader = True
    h.changed.set()  # the node process sets it on a leadership change
    await h.until(lambda: len(h.live()) == 2)
    await h.loop.stop()
    await runner


async def test_loop_wakes_for_a_restart_backoff_without_a_state_change():
    h = Harness(Cluster(1))
    h.cluster.create(name="web", replicas=1, restart={"delay": 0.2})
    runner = await running(h)
    await h.until(lambda: h.live() and h.live()[0].state == "assigned")
    first = h.live()[0]
    await h.commit(ReportTaskStatus(first.node_id, time.time(), (TaskReport(first.id, "failed"),)))
    await h.until(lambda: h.live()[0].id != first.id)  # only the backoff timer can cause this
    assert h.live()[0].restarts == 1
    await h.loop.stop()
    await runner


async def test_a_failed_proposal_is_retried():
    h = Harness(Cluster(1))
    h.fail_next = 2
    h.cluster.create(name="web", replicas=1)
    runner = await running(h)
    await h.until(lambda: h.live() and h.live()[0].state == "assigned")
    assert h.fail_next == 0 and len(h.proposals) == 1
    await h.loop.stop()
    await runner


async def test_stop_cancels_a_round_stuck_in_propose():
    stuck = asyncio.Event()

    async def hang(cmd):
        stuck.set()
        await asyncio.Event().wait()

    h = Harness(Cluster(1), propose=hang)
    h.cluster.create(name="web", replicas=1)
    runner = await running(h)
    await stuck.wait()
    await h.loop.stop(timeout=0.1)
    assert runner.done()


def test_task_ids_are_random_128_bit_hex_across_pool_refills():
    ids = random_ids(block=8)
    drawn = [next(ids) for _ in range(1000)]  # 125 refills of the pool
    assert len(set(drawn)) == len(drawn)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in drawn)
