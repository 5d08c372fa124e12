"""Report batching: a batch commits exactly what the reports one by one would have, and the
sender proposes one command per round, keeping what could not be committed."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import Node, Resources
from consensus.nodes import RegisterNode
from consensus.raft import NoQuorum
from consensus.services import parse_service_spec
from consensus.state import ClusterState, Result
from consensus.tasks import (
    Assignment,
    AssignTasks,
    CreateService,
    Endpoint,
    PortBinding,
    ReportTaskStatus,
    Task,
    TaskReport,
    tasks,
)
from node.agent.reports import PendingReports, ReportSender, merge

TASK_IDS = ("t1", "t2", "t3")


def assigned_state() -> ClusterState:
    state = ClusterState()
    state.apply(
        RegisterNode(
            Node("n1", "node1", "127.0.0.1", 7420, 7421, 7422, resources=Resources(4000, 1 << 30))
        )
    )
    state.apply(
        CreateService(
            "s1", parse_service_spec({"name": "web", "image": "busybox", "replicas": 3}), 1.0
        )
    )
    created = tuple(Task(t, "s1", "web", i + 1, 1) for i, t in enumerate(TASK_IDS))
    result = state.apply(
        AssignTasks(2.0, create=created, assign=tuple(Assignment(t, "n1") for t in TASK_IDS))
    )
    assert result.value["assigned"] == 3
    return state


reports = st.builds(
    TaskReport,
    task_id=st.sampled_from(TASK_IDS),
    state=st.sampled_from(
        ["preparing", "starting", "running", "complete", "failed", "shutdown", "rejected"]
    ),
    message=st.sampled_from(["", "m1", "m2"]),
    error=st.sampled_from(["", "e1", "e2"]),
    exit_code=st.none() | st.integers(0, 3),
    health=st.none() | st.sampled_from(["none", "starting", "healthy", "unhealthy"]),
    endpoint=st.none()
    | st.builds(
        Endpoint,
        st.just("127.0.0.1"),
        st.tuples(st.builds(PortBinding, st.just(80), st.integers(30000, 30002))),
    ),
    runtime_id=st.sampled_from(["", "r1", "r2"]),
)


def one_by_one(seq: list[TaskReport]) -> dict:
    state = assigned_state()
    for report in seq:
        state.apply(ReportTaskStatus("n1", 5.0, (report,)))
    return tasks(state)


def batched(batch: tuple[TaskReport, ...]) -> dict:
    state = assigned_state()
    state.apply(ReportTaskStatus("n1", 5.0, batch))
    return tasks(state)


@settings(max_examples=150, deadline=None)
@given(st.lists(reports, max_size=12))
def test_a_batch_commits_what_the_reports_one_by_one_would(seq):
    pending = PendingReports()
    for report in seq:
        pending.add(report)
    batch = pending.take()
    assert len(batch) <= len(seq) and not pending
    assert batched(batch) == one_by_one(seq)


@settings(max_examples=150, deadline=None)
@given(st.lists(reports, max_size=12), st.data())
def test_a_restored_batch_goes_under_newer_reports(seq, data):
    split = data.draw(st.integers(0, len(seq)))
    pending = PendingReports()
    for report in seq[:split]:
        pending.add(report)
    failed = pending.take()  # sent, but not committed
    for report in seq[split:]:
        pending.add(report)
    pending.restore(failed)
    assert batched(pending.take()) == one_by_one(seq)


def test_merge_keeps_what_the_newer_report_leaves_empty():
    older = TaskReport(
        "t1",
        "running",
        message="up",
        error="",
        exit_code=None,
        health="starting",
        endpoint=Endpoint("127.0.0.1", (PortBinding(80, 30000),)),
        runtime_id="r1",
    )
    newer = TaskReport("t1", "running", health="healthy")
    assert merge(older, newer) == TaskReport(
        "t1", "running", message="up", health="healthy", endpoint=older.endpoint, runtime_id="r1"
    )


def test_transitions_of_one_task_stay_in_order():
    pending = PendingReports()
    for report in (
        TaskReport("t1", "running", health="starting"),
        TaskReport("t2", "running"),
        TaskReport("t1", "running", health="healthy"),
        TaskReport("t1", "failed", error="boom", exit_code=1),
    ):
        pending.add(report)
    assert pending.take() == (
        TaskReport("t1", "running", health="healthy"),
        TaskReport("t1", "failed", error="boom", exit_code=1),
        TaskReport("t2", "running"),
    )


class Recorder:
    """Commits through the real state machine; can hold a submit open or refuse one."""

    def __init__(self) -> None:
        self.state = assigned_state()
        self.commands: list[ReportTaskStatus] = []
        self.refuse = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self._committed = asyncio.Condition()

    async def submit(self, cmd: ReportTaskStatus) -> Result:
        self.entered.set()
        await self.gate.wait()
        if self.refuse:
            self.refuse -= 1
            raise NoQuorum("no quorum: test")
        self.commands.append(cmd)
        async with self._committed:
            self._committed.notify_all()
        return self.state.apply(cmd)

    async def until_committed(self, count: int) -> None:
        async with self._committed:
            await asyncio.wait_for(
                self._committed.wait_for(lambda: len(self.commands) >= count), 10
            )


async def test_sender_sends_one_command_per_round():
    recorder = Recorder()
    recorder.gate.clear()
    sender = ReportSender("n1", recorder.submit, interval=0, clock=lambda: 7.0)
    runner = asyncio.ensure_future(sender.run())
    try:
        sender.add(TaskReport("t1", "running"))
        await recorder.entered.wait()  # the first round is in flight: the rest must wait
        for task_id in TASK_IDS:
            sender.add(TaskReport(task_id, "failed", error="boom"))
        recorder.gate.set()
        await recorder.until_committed(2)
    finally:
        runner.cancel()
    assert [len(c.reports) for c in recorder.commands] == [1, 3]
    assert {t.state for t in tasks(recorder.state).values()} == {"failed"}
    assert tasks(recorder.state)["t1"].started_at == 7.0


async def test_sender_keeps_reports_that_were_not_committed():
    recorder = Recorder()
    recorder.refuse = 1
    sender = ReportSender("n1", recorder.submit, interval=0)
    runner = asyncio.ensure_future(sender.run())
    try:
        sender.add(TaskReport("t1", "running", health="starting"))
        sender.add(TaskReport("t2", "running"))
        await recorder.until_committed(1)
    finally:
        runner.cancel()
    assert recorder.commands[0].reports == (
        TaskReport("t1", "running", health="starting"),
        TaskReport("t2", "running"),
    )
    assert tasks(recorder.state)["t1"].health == "starting"
