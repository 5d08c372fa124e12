"""What the agent decides from its assignments and its runners (tables), and which tasks
count as assigned to it (the real state machine)."""

from __future__ import annotations

import dataclasses

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import Node, Resources
from consensus.nodes import RegisterNode
from consensus.services import parse_service_spec
from consensus.state import ClusterState
from consensus.store import next_version, version_of
from consensus.tasks import (
    Assignment,
    AssignTasks,
    CreateService,
    ReportTaskStatus,
    StopTask,
    Task,
    TaskReport,
    UpdateService,
)
from node.agent.plan import Assigned, Decision, Planner, Retire, assigned_to, decide
from tests.state_support import spread_state

SPEC = parse_service_spec({"name": "web", "image": "busybox", "stop_grace_period": "7s"})


def entry(task_id: str, spec=SPEC, **fields) -> Assigned:
    return Assigned(
        Task(
            **{
                "id": task_id,
                "service_id": "s1",
                "service": "web",
                "slot": 1,
                "spec_version": 1,
                "node_id": "n1",
                "state": "assigned",
                **fields,
            }
        ),
        spec,
    )


def lost(task_id: str) -> TaskReport:
    return TaskReport(
        task_id, "failed", error="its container or process was gone when the agent restarted"
    )


@pytest.mark.parametrize(
    "assigned, local, expected",
    [
        # New assignments start once; one this agent already holds is left alone.
        (
            [entry("a"), entry("b", state="preparing"), entry("c", state="starting")],
            {},
            Decision(
                start=(entry("a"), entry("b", state="preparing"), entry("c", state="starting"))
            ),
        ),
        ([entry("a"), entry("b", state="running")], {"a": "starting", "b": "running"}, Decision()),
        # Reported running but held by no runner (the runtime lost it while the agent was away).
        ([entry("a", state="running")], {}, Decision(reports=(lost("a"),))),
        # Ended while told to run: its remains stay until the scheduler retires it.
        ([entry("a", state="failed")], {"a": "ended"}, Decision()),
        ([entry("a", state="failed")], {}, Decision()),
        # Told to shut down: a running one is stopped with the spec's grace, then reported.
        (
            [entry("a", state="running", desired="shutdown", message="scaled down")],
            {"a": "running"},
            Decision(
                retire=(Retire("a", 7.0, TaskReport("a", "shutdown", message="scaled down")),)
            ),
        ),
        # ... one that ended already is only removed ...
        (
            [entry("a", state="failed", desired="shutdown")],
            {"a": "ended"},
            Decision(retire=(Retire("a", 7.0, None),)),
        ),
        # ... one with nothing here is over; one already over needs nothing.
        (
            [entry("a", state="running", desired="shutdown")],
            {},
            Decision(reports=(TaskReport("a", "shutdown", message="shut down"),)),
        ),
        ([entry("a", state="shutdown", desired="shutdown")], {}, Decision()),
        # A runner whose task is gone from the state is an orphan; a retiring one is left be.
        ([], {"x": "running", "y": "retiring"}, Decision(retire=(Retire("x"),))),
        # Its spec version gone: the runner's own grace applies.
        (
            [entry("a", spec=None, state="running", desired="shutdown")],
            {"a": "running"},
            Decision(retire=(Retire("a", None, TaskReport("a", "shutdown", message="shut down")),)),
        ),
    ],
)
def test_decide(assigned, local, expected):
    assert decide({e.task.id: e for e in assigned}, local) == expected


def node(i: int) -> Node:
    return Node(
        f"n{i}", f"node{i}", f"127.0.0.{i}", 7420, 7421, 7422, resources=Resources(4000, 1 << 30)
    )


def test_assigned_to_copies_this_nodes_tasks_with_their_spec_versions():
    state = ClusterState()
    for i in (1, 2):
        state.apply(RegisterNode(node(i)))
    v1 = parse_service_spec({"name": "web", "image": "busybox:1", "replicas": 2})
    state.apply(CreateService("s1", v1, 1.0))
    state.apply(
        CreateService(
            "s2", parse_service_spec({"name": "agent", "image": "busybox", "mode": "global"}), 1.0
        )
    )
    created = (
        Task("a", "s1", "web", 1, 1),
        Task("b", "s1", "web", 2, 1),
        Task("g", "s2", "agent", 0, 1, node_id="n1"),
    )
    assert (
        state.apply(
            AssignTasks(2.0, create=created, assign=(Assignment("a", "n1"), Assignment("b", "n2")))
        ).value["rejected"]
        == []
    )
    v2 = dataclasses.replace(v1, image="busybox:2")
    state.apply(UpdateService(v2, 3.0))
    state.apply(AssignTasks(4.0, stop=(StopTask("a", "update"),)))

    mine = assigned_to(version_of(state), "n1")
    # "g" names n1 but is still pending: not this agent's yet. "b" is n2's.
    assert list(mine) == ["a"]
    assert mine["a"].spec == v1 and mine["a"].task.desired == "shutdown"


@pytest.mark.parametrize("nodes", [100, 2000])
def test_one_changed_task_costs_the_planners_of_every_node_its_own_nodes_rows_alone(nodes):
    # 1,000 then 20,000 tasks, 10 a node: one task's report makes every node's planner look
    # at 10 rows in all (its own node's), however large the cluster.
    state = spread_state(nodes, 10)
    planners = [Planner(f"n{n}") for n in range(nodes)]
    version = version_of(state)
    for planner in planners:
        planner.decide(version, {})
    before = sum(p.rows_read for p in planners)
    changed = "t7-3"
    assert state.apply(ReportTaskStatus("n7", 3.0, (TaskReport(changed, "starting"),))).ok
    version = next_version(version, state)
    decided = [p.node_id for p in planners if p.decide(version, {}) is not None]
    assert decided == ["n7"]
    assert sum(p.rows_read for p in planners) - before == 10
