"""Service and task commands through the real state machine: the apply-time re-check
rejects stale placements, reports only move forward, specs keep their history."""

from __future__ import annotations

import dataclasses

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus import codec
from consensus.model import Node, Resources
from consensus.nodes import RegisterNode, SetNodeStatus, UpdateNode
from consensus.services import SPEC_HISTORY, parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import (
    Assignment,
    AssignTasks,
    CreateService,
    DeleteService,
    Endpoint,
    PortBinding,
    ReportTaskStatus,
    StopTask,
    Task,
    TaskReport,
    UpdateService,
    services,
    tasks,
)

GiB = 1 << 30


def node(i: int, memory: int = 1 * GiB, **fields) -> Node:
    return Node(
        f"n{i}",
        f"node{i}",
        f"127.0.0.{i + 1}",
        7420,
        7421,
        7422,
        resources=Resources(1000, memory),
        **fields,
    )


def spec(name: str = "web", **plain):
    return parse_service_spec({"name": name, "image": "busybox", **plain})


@pytest.fixture
def state() -> ClusterState:
    s = ClusterState()
    for i in range(2):
        assert s.apply(RegisterNode(node(i))).ok
    return s


def new_task(state: ClusterState, task_id: str, slot: int, service: str = "web", **fields) -> Task:
    svc = services(state)[service]
    s = svc.spec
    return Task(
        task_id,
        svc.id,
        service,
        slot,
        svc.version,
        reserved=s.resources.reservations,
        host_ports=s.host_ports,
        **fields,
    )


def test_create_rejects_duplicate_names_and_bad_specs(state):
    assert state.apply(CreateService("s1", spec(), 1.0)).value == {"id": "s1", "version": 1}
    dup = state.apply(CreateService("s2", spec(), 2.0))
    assert (dup.ok, dup.code) == (False, 409) and "already exists" in dup.error
    bad = state.apply(CreateService("s3", dataclasses.replace(spec("other"), replicas=-2), 2.0))
    assert (bad.ok, bad.code) == (False, 400) and bad.error.startswith("replicas:")


def test_ingress_ports_are_unique_across_services(state):
    assert state.apply(CreateService("s1", spec(ports=["8080:80"]), 1.0)).ok
    clash = state.apply(CreateService("s2", spec("api", ports=["8080:81"]), 1.0))
    assert not clash.ok and "already published by service 'web'" in clash.error
    assert state.apply(CreateService("s3", spec("dns", ports=["8080:53/udp"]), 1.0)).ok


def test_update_bumps_version_keeps_history_and_ignores_no_change(state):
    state.apply(CreateService("s1", spec(), 1.0))
    for n in range(2, 2 + SPEC_HISTORY + 3):
        assert state.apply(UpdateService(spec(replicas=n), float(n))).value["changed"]
    svc = services(state)["web"]
    assert svc.version == SPEC_HISTORY + 4
    assert [h.version for h in svc.history] == list(range(4, SPEC_HISTORY + 4))
    assert svc.spec_at(svc.version - 1).replicas == svc.spec.replicas - 1
    same = state.apply(UpdateService(svc.spec, 99.0))
    assert same.value["changed"] is False and services(state)["web"].version == svc.version


def test_update_with_a_stale_expected_version_conflicts(state):
    state.apply(CreateService("s1", spec(), 1.0))
    state.apply(UpdateService(spec(replicas=2), 2.0))
    stale = state.apply(UpdateService(spec(replicas=3), 3.0, expected_version=1))
    assert (stale.ok, stale.code) == (False, 409)
    assert state.apply(UpdateService(spec(replicas=3), 3.0, expected_version=2)).ok


def test_assign_rechecks_capacity_against_current_state(state):
    state.apply(
        CreateService("s1", spec(replicas=3, resources={"reservations": {"memory": "400Mi"}}), 1.0)
    )
    create = tuple(new_task(state, f"t{i}", i) for i in (1, 2, 3))
    # A stale plan: all three on n0, which holds only two of them.
    result = state.apply(
        AssignTasks(2.0, create=create, assign=tuple(Assignment(t.id, "n0") for t in create))
    )
    assert result.value["created"] == 3 and result.value["assigned"] == 2
    assert result.value["rejected"] == [["t3", "insufficient resources on node node0"]]
    t3 = tasks(state)["t3"]
    assert t3.state == "pending" and t3.message.startswith(
        "placement rejected: insufficient resources"
    )
    assert state.apply(AssignTasks(3.0, assign=(Assignment("t3", "n1"),))).value["assigned"] == 1


@pytest.mark.parametrize(
    "change, reason",
    [
        (SetNodeStatus("n0", "down", 1.5), "node node0 is down"),
        (UpdateNode("n0", availability="drain"), "node node0 is drain"),
        (UpdateNode("n0", set_labels={"zone": "b"}), "constraint node.labels.zone==a unmet"),
    ],
)
def test_assign_rejects_a_node_that_changed_since_the_plan(state, change, reason):
    state.apply(UpdateNode("n0", set_labels={"zone": "a"}))
    state.apply(CreateService("s1", spec(constraints=["node.labels.zone==a"]), 1.0))
    state.apply(AssignTasks(1.0, create=(new_task(state, "t1", 1),)))
    state.apply(change)
    result = state.apply(AssignTasks(2.0, assign=(Assignment("t1", "n0"),)))
    assert result.value["assigned"] == 0 and reason in result.value["rejected"][0][1]


def test_assign_rejects_a_host_port_in_use(state):
    state.apply(
        CreateService(
            "s1", spec(replicas=2, ports=[{"target": 80, "published": 8080, "mode": "host"}]), 1.0
        )
    )
    create = (new_task(state, "t1", 1), new_task(state, "t2", 2))
    result = state.apply(
        AssignTasks(2.0, create=create, assign=(Assignment("t1", "n0"), Assignment("t2", "n0")))
    )
    assert result.value["rejected"] == [["t2", "host port 8080/tcp in use on node node0"]]


def test_a_slot_never_gets_two_running_tasks(state):
    state.apply(CreateService("s1", spec(), 1.0))
    state.apply(AssignTasks(1.0, create=(new_task(state, "t1", 1),)))
    again = state.apply(AssignTasks(2.0, create=(new_task(state, "t2", 1),)))
    assert again.value["created"] == 0 and "already has a task" in again.value["rejected"][0][1]
    # Replacing in one command: the stop comes first, so the slot is free for the new task.
    swap = state.apply(
        AssignTasks(3.0, stop=(StopTask("t1", "replaced"),), create=(new_task(state, "t2", 1),))
    )
    assert swap.value["created"] == 1 and tasks(state)["t1"].state == "shutdown"


def test_stopping_a_task_on_a_down_node_orphans_it_and_remove_needs_an_ended_task(state):
    state.apply(CreateService("s1", spec(), 1.0))
    state.apply(
        AssignTasks(1.0, create=(new_task(state, "t1", 1),), assign=(Assignment("t1", "n0"),))
    )
    early = state.apply(AssignTasks(2.0, remove=("t1",)))
    assert early.value["removed"] == 0 and "t1" in tasks(state)
    state.apply(SetNodeStatus("n0", "down", 2.0))
    state.apply(AssignTasks(3.0, stop=(StopTask("t1", "node node0 is down"),)))
    t1 = tasks(state)["t1"]
    assert (t1.desired, t1.state, t1.finished_at) == ("shutdown", "orphaned", 3.0)
    assert state.apply(AssignTasks(4.0, remove=("t1",))).value["removed"] == 1 and not tasks(state)


def test_delete_service_stops_its_tasks(state):
    state.apply(CreateService("s1", spec(replicas=2), 1.0))
    state.apply(
        AssignTasks(
            1.0,
            create=(new_task(state, "t1", 1), new_task(state, "t2", 2)),
            assign=(Assignment("t1", "n0"),),
        )
    )
    assert state.apply(DeleteService("web", 2.0)).ok and "web" not in services(state)
    t1, t2 = tasks(state)["t1"], tasks(state)["t2"]
    assert (t1.desired, t1.state) == ("shutdown", "assigned")  # its agent will stop it
    assert (t2.desired, t2.state) == ("shutdown", "shutdown")  # never placed: over at once
    assert state.apply(DeleteService("web", 3.0)).code == 404


def test_reports_move_forward_only_and_come_from_the_tasks_node(state):
    state.apply(CreateService("s1", spec(replicas=1), 1.0))
    state.apply(
        AssignTasks(1.0, create=(new_task(state, "t1", 1),), assign=(Assignment("t1", "n0"),))
    )
    endpoint = Endpoint("127.0.0.1", (PortBinding(80, 31000),))
    result = state.apply(
        ReportTaskStatus(
            "n0",
            5.0,
            (
                TaskReport("t1", "starting", runtime_id="c1"),
                TaskReport("t1", "running", health="healthy", endpoint=endpoint),
                TaskReport("t1", "preparing"),
                TaskReport("nope", "running"),
            ),
        )
    )
    assert result.value["applied"] == 2
    assert [r[0] for r in result.value["rejected"]] == ["t1", "nope"]
    assert "stale report" in result.value["rejected"][0][1]
    t1 = tasks(state)["t1"]
    assert (t1.state, t1.health, t1.endpoint, t1.runtime_id, t1.started_at) == (
        "running",
        "healthy",
        endpoint,
        "c1",
        5.0,
    )
    wrong = state.apply(ReportTaskStatus("n1", 6.0, (TaskReport("t1", "failed"),)))
    assert "not assigned to node n1" in wrong.value["rejected"][0][1]
    state.apply(
        ReportTaskStatus("n0", 7.0, (TaskReport("t1", "failed", exit_code=2, error="boom"),))
    )
    t1 = tasks(state)["t1"]
    assert (t1.state, t1.exit_code, t1.error, t1.finished_at) == ("failed", 2, "boom", 7.0)
    final = state.apply(ReportTaskStatus("n0", 8.0, (TaskReport("t1", "complete"),)))
    assert final.value["applied"] == 0


def test_commands_survive_the_codec_and_snapshots(state):
    state.apply(CreateService("s1", spec(ports=["8080:80"], constraints=["node.labels.a==b"]), 1.0))
    cmd = AssignTasks(2.0, create=(new_task(state, "t1", 1),))
    assert codec.decode(codec.encode(cmd)).command == cmd
    assert state.apply_bytes(codec.encode(cmd)).value["created"] == 1
    restored = ClusterState.from_msgpack(state.to_msgpack())
    assert services(restored) == services(state) and tasks(restored) == tasks(state)


def test_garbage_commands_are_rejected_not_crashing(state):
    bad = codec.encode(AssignTasks(1.0)).replace(b"at", b"xx")
    result = state.apply_bytes(bad)
    assert not result.ok and result.code == 400


def test_quotas_on_services_and_replicas_are_clear_errors(state):
    from consensus.services import MAX_CLUSTER_REPLICAS, MAX_REPLICAS, MAX_SERVICES

    big = MAX_CLUSTER_REPLICAS // MAX_REPLICAS
    for i in range(big):
        assert state.apply(CreateService(f"b{i}", spec(f"big{i}", replicas=MAX_REPLICAS), 1.0)).ok
    over = state.apply(CreateService("x", spec("one-more", replicas=1), 1.0))
    assert over.code == 422 and over.error.startswith("replicas:") and "quota" in over.error
    assert state.apply(CreateService("z", spec("none", replicas=0), 1.0)).ok
    scale = state.apply(UpdateService(spec("big0", replicas=MAX_REPLICAS - 1), 2.0))
    assert scale.ok  # shrinking always fits
    for i in range(big + 1, MAX_SERVICES):
        assert state.apply(CreateService(f"s{i}", spec(f"svc{i}", replicas=0), 1.0)).ok
    full = state.apply(CreateService("last", spec("last", replicas=0), 1.0))
    assert full.code == 422 and full.error.startswith("name:") and str(MAX_SERVICES) in full.error
