"""Rollout state in the replicated state machine: a start-first successor may share its
slot only with older versions, rollbacks and rollout records survive snapshots and the codec."""

from __future__ import annotations

import consensus  # noqa: F401  (registers commands and tables)
from consensus import codec
from consensus.model import Node, Resources
from consensus.nodes import RegisterNode
from consensus.rollout import Rollout, Watch
from consensus.services import merge_spec, parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import AssignTasks, CreateService, Task, UpdateService, services, tasks
from consensus.updates import RecordRollout, RollbackService


def cluster() -> ClusterState:
    state = ClusterState()
    assert state.apply(
        RegisterNode(
            Node("n0", "node0", "127.0.0.1", 7420, 7421, 7422, resources=Resources(1000, 1 << 30))
        )
    ).ok
    spec = parse_service_spec({"name": "web", "image": "busybox", "rollback": {"parallelism": 2}})
    assert state.apply(CreateService("s1", spec, 1.0)).ok
    return state


def task(state: ClusterState, task_id: str, slot: int = 1) -> Task:
    service = services(state)["web"]
    return Task(task_id, service.id, "web", slot, service.version)


def test_a_slot_takes_a_newer_version_beside_an_older_one_but_never_two_of_one_version():
    state = cluster()
    assert state.apply(AssignTasks(2.0, create=(task(state, "a"),))).value["created"] == 1
    twin = state.apply(AssignTasks(2.0, create=(task(state, "b"),))).value
    assert twin["rejected"] == [["b", "slot (1, '') already has a task"]]
    web = services(state)["web"]
    assert state.apply(UpdateService(merge_spec(web.spec, {"image": "busybox:2"}), 3.0)).ok
    successor = state.apply(AssignTasks(4.0, create=(task(state, "c"), task(state, "d")))).value
    assert successor["created"] == 1 and successor["rejected"][0][0] == "d"
    assert {t.id for t in tasks(state).values() if t.desired == "running"} == {"a", "c"}


def test_rollback_and_rollout_records_survive_the_codec_and_snapshots():
    state = cluster()
    web = services(state)["web"]
    assert state.apply(UpdateService(merge_spec(web.spec, {"image": "busybox:2"}), 3.0)).ok
    rollback = codec.decode(codec.encode(RollbackService("web", 5.0, reason="bad image"))).command
    assert state.apply(rollback).value == {
        "id": "s1",
        "version": 3,
        "changed": True,
        "rolled_back_to": 1,
    }
    rolled = services(state)["web"].rollout
    assert (rolled.kind, rolled.state, rolled.config.parallelism, rolled.reason) == (
        "rollback",
        "rolling_back",
        2,
        "bad image",
    )
    progress = Rollout(
        "s1",
        3,
        2,
        kind="rollback",
        state="rolling_back",
        batch=(Watch("t1", 6.0),),
        updated=1,
        remaining=1,
    )
    record = codec.decode(codec.encode(RecordRollout("web", progress))).command
    assert state.apply(record).ok
    restored = ClusterState.from_msgpack(state.to_msgpack())
    assert services(restored)["web"].rollout == progress and progress.total == 3
