"""The read path: versions of the state that readers take with no lock while the Raft thread
applies, that nothing can change, whose indexes match the tables, and that an older
snapshot still restores into."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import threading
from dataclasses import dataclass

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import consensus  # noqa: F401  (registers commands and tables)
from consensus import codec
from consensus.codec import command
from consensus.model import Node, Resources
from consensus.nodes import RegisterNode, RemoveNode, nodes
from consensus.raft import RaftNode
from consensus.services import parse_service_spec
from consensus.state import ClusterState, Result, handles
from consensus.store import StateVersion, Store, next_version, version_of
from consensus.tasks import (
    TASKS,
    Assignment,
    AssignTasks,
    CreateService,
    DeleteService,
    ReportTaskStatus,
    StopTask,
    Task,
    TaskReport,
    services,
    tasks,
    tasks_of,
    tasks_of_service,
    tasks_on,
)
from tests.state_support import spread_state
from tests.unit.consensus.test_durable_log import _leader
from tests.unit.consensus.test_raft_changes import free_port

SNAPSHOT_FORMAT_1 = pathlib.Path(__file__).parents[2] / "fixtures/snapshots/state-format1.msgpack"

# A command whose handler stops half-way through its writes until the test lets it go.
halfway, release = threading.Event(), threading.Event()


@command("test.store.paused-write")
@dataclass(frozen=True, slots=True)
class PausedWrite:
    first: Node
    second: Node


@handles(PausedWrite)
def _paused_write(state: ClusterState, cmd: PausedWrite) -> Result:
    table = nodes(state)
    table[cmd.first.id] = cmd.first
    halfway.set()
    release.wait(20)
    table[cmd.second.id] = cmd.second
    return Result(True)


def node(i: int) -> Node:
    return Node(
        f"n{i}", f"node{i}", f"127.0.0.{i}", 7420, 7421, 7422, resources=Resources(4000, 1 << 30)
    )


@pytest.fixture
async def raft(tmp_path):
    made = RaftNode(data_dir=str(tmp_path), address=f"127.0.0.1:{free_port()}", password="t")
    made.start("voter", [])
    await _leader([made])
    yield made
    release.set()
    made.stop()


async def test_a_reader_never_waits_for_an_apply_and_sees_the_last_whole_version(raft):
    store = Store(raft)
    assert (await raft.propose(RegisterNode(node(1)))).ok
    halfway.clear()
    release.clear()
    writing = asyncio.ensure_future(raft.propose(PausedWrite(node(2), node(3))))
    assert await asyncio.to_thread(halfway.wait, 10), "the apply never started"

    # The Raft thread is inside the apply now, one row written and one to go. A read taken
    # on another thread must come back at once (it would hang on a lock).
    taken: list[StateVersion] = []
    reader = threading.Thread(target=lambda: taken.append(store.view()))
    reader.start()
    reader.join(2.0)
    assert taken, "a read waited for the apply in progress"
    on_loop = store.view()  # and on the event loop, which runs this test
    for before in (taken[0], on_loop):
        assert set(nodes(before)) == {"n1"}  # nothing of the command half applied
        assert before.applied == raft.applied()

    release.set()
    assert (await writing).ok
    after = store.view()
    assert set(nodes(after)) == {"n1", "n2", "n3"} and after.applied == on_loop.applied + 1
    assert set(nodes(on_loop)) == {"n1"}  # the version read before stays as it was


def _assigned_state() -> ClusterState:
    state = ClusterState()
    for i in (1, 2):
        state.apply(RegisterNode(node(i)))
    state.apply(
        CreateService(
            "s1", parse_service_spec({"name": "web", "image": "busybox", "replicas": 2}), 1.0
        )
    )
    state.apply(
        AssignTasks(
            2.0,
            create=(Task("a", "s1", "web", 1, 1), Task("b", "s1", "web", 2, 1)),
            assign=(Assignment("a", "n1"), Assignment("b", "n2")),
        )
    )
    return state


def test_a_version_cannot_be_changed():
    view = version_of(_assigned_state())
    with pytest.raises(TypeError):
        nodes(view)["n9"] = node(9)  # type: ignore[index]
    with pytest.raises(TypeError):
        del tasks(view)["a"]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        view.tables[TASKS] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        tasks_on(view, "n1")["b"] = tasks(view)["b"]  # type: ignore[index]
    with pytest.raises(TypeError):
        view.indexes[(TASKS, "node_id")]["n3"] = {}  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.applied = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tasks(view)["a"].node_id = "n2"  # type: ignore[misc]


def _plain(view: StateVersion) -> tuple:
    return (
        view.cluster,
        view.applied,
        {name: dict(rows) for name, rows in view.tables.items()},
        {
            key: {value: dict(rows) for value, rows in index.items()}
            for key, index in view.indexes.items()
        },
    )


def test_each_version_built_from_one_commands_changes_equals_one_built_whole():
    state = ClusterState()
    version = version_of(state)
    kept: list[tuple[StateVersion, tuple]] = []

    def apply(cmd) -> None:
        nonlocal version
        assert state.apply(cmd).ok
        version = next_version(version, state)
        assert _plain(version) == _plain(version_of(state))
        kept.append((version, _plain(version)))

    for i in (1, 2, 3):
        apply(RegisterNode(node(i)))
    apply(
        CreateService(
            "s1", parse_service_spec({"name": "web", "image": "busybox", "replicas": 3}), 1.0
        )
    )
    apply(CreateService("s2", parse_service_spec({"name": "db", "image": "busybox"}), 1.0))
    apply(
        AssignTasks(
            2.0,
            create=(
                Task("a", "s1", "web", 1, 1),
                Task("b", "s1", "web", 2, 1),
                Task("c", "s1", "web", 3, 1),
                Task("d", "s2", "db", 1, 1),
            ),
            assign=(
                Assignment("a", "n1"),
                Assignment("b", "n2"),
                Assignment("c", "n1"),
                Assignment("d", "n1"),
            ),
        )
    )
    assert set(tasks_on(version, "n1")) == {"a", "c", "d"} and set(tasks_on(version, "n3")) == set()
    assert {t.id for t in tasks_of(version, "web")} == {"a", "b", "c"}
    assert [t.id for t in tasks_of_service(version, services(version)["db"])] == ["d"]
    apply(AssignTasks(3.0, stop=(StopTask("a", "scaled down"),)))
    assert tasks_on(version, "n1")["a"].desired == "shutdown"
    apply(DeleteService("web", 4.0))
    apply(RegisterNode(dataclasses.replace(node(3), name="third")))
    # Every earlier version still holds what it held when it was published.
    assert all(_plain(old) == plain for old, plain in kept)


def test_a_snapshot_of_the_earlier_format_restores_with_its_indexes():
    """Written by the state machine before versions and indexes existed: snapshots hold the
    tables alone, and the indexes are rebuilt from them."""
    restored = ClusterState.from_msgpack(SNAPSHOT_FORMAT_1.read_bytes())
    view = version_of(restored)
    assert view.applied == 6 and view.cluster.cluster_id == "c1"
    assert set(nodes(view)) == {"n1", "n2"}
    assert set(tasks_on(view, "n1")) == {"a", "c"} and set(tasks_on(view, "n2")) == {"b", "d"}
    assert [t.id for t in tasks_of(view, "web")] == ["a", "b", "c"]
    # and writes back every row and field it held (fields added since then appear too, with
    # their defaults; an empty table is left out)
    old = msgpack.unpackb(SNAPSHOT_FORMAT_1.read_bytes(), raw=False, strict_map_key=False)
    again = restored.to_plain()
    assert again["applied"] == old["applied"]
    assert {k: again["cluster"][k] for k in old["cluster"]} == old["cluster"]
    for name, rows in old["tables"].items():
        assert set(again["tables"].get(name, {})) == set(rows)
        for key, row in rows.items():
            assert {f: again["tables"][name][key][f] for f in row} == row


TASK_IDS = st.sampled_from(["t1", "t2", "t3", "t4", "t5"])
NODE_NUMBERS = st.sampled_from([1, 2, 3])
SERVICES = {"s1": "web", "s2": "db"}
round_commands = st.one_of(
    st.builds(lambda i: RegisterNode(node(i)), NODE_NUMBERS),
    st.builds(lambda i: RemoveNode(f"n{i}"), NODE_NUMBERS),
    st.builds(
        lambda sid: CreateService(
            sid, parse_service_spec({"name": SERVICES[sid], "image": "busybox"}), 1.0
        ),
        st.sampled_from(sorted(SERVICES)),
    ),
    st.builds(lambda name: DeleteService(name, 2.0), st.sampled_from(sorted(SERVICES.values()))),
    st.builds(
        lambda tid, sid, slot, i, placed: AssignTasks(
            3.0,
            create=(Task(tid, sid, SERVICES[sid], slot, 1),),
            assign=(Assignment(tid, f"n{i}"),) if placed else (),
        ),
        TASK_IDS,
        st.sampled_from(sorted(SERVICES)),
        st.integers(1, 3),
        NODE_NUMBERS,
        st.booleans(),
    ),
    st.builds(
        lambda tid, i: AssignTasks(4.0, assign=(Assignment(tid, f"n{i}"),)), TASK_IDS, NODE_NUMBERS
    ),
    st.builds(lambda tid: AssignTasks(5.0, stop=(StopTask(tid, "scaled down"),)), TASK_IDS),
    st.builds(
        lambda i, tid, report: ReportTaskStatus(f"n{i}", 6.0, (TaskReport(tid, report),)),
        NODE_NUMBERS,
        TASK_IDS,
        st.sampled_from(["running", "failed", "shutdown"]),
    ),
    st.builds(lambda tid: AssignTasks(7.0, remove=(tid,)), TASK_IDS),
)


def _retired(state: ClusterState, task_id: str) -> list:
    """Stop a task, its node reports it ended, remove it: the way a task leaves the table."""
    task = tasks(state).get(task_id)
    node_id = task.node_id if task is not None else "n1"
    return [
        AssignTasks(8.0, stop=(StopTask(task_id, "scaled down"),)),
        ReportTaskStatus(node_id, 8.0, (TaskReport(task_id, "shutdown"),)),
        AssignTasks(8.0, remove=(task_id,)),
    ]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(round_commands, TASK_IDS, st.just(b"\x00garbage")), st.booleans()),
        max_size=25,
    )
)
def test_indexes_kept_from_the_changes_of_the_commands_since_the_last_version_match_the_tables(
    steps,
):
    """Steps are commands, undecodable entries, or a task's id: retire that task; each is
    followed by a new version or not (the Raft thread publishes once per batch)."""
    state = ClusterState()
    for i in (1, 2, 3):
        state.apply(RegisterNode(node(i)))
    for sid, name in SERVICES.items():
        state.apply(CreateService(sid, parse_service_spec({"name": name, "image": "busybox"}), 0.0))
    version = version_of(state)
    for step, publish in steps + [(b"", True)]:
        for cmd in _retired(state, step) if isinstance(step, str) else [step] if step else []:
            state.apply_bytes(cmd if isinstance(cmd, bytes) else codec.encode(cmd, ""))
        if not publish:
            continue
        version = next_version(version, state)
        assert _plain(version) == _plain(version_of(state))
        for task_id, task in tasks(version).items():
            assert (task_id in tasks_on(version, task.node_id)) == bool(task.node_id)
            assert task in tasks_of(version, task.service)


@pytest.mark.parametrize("nodes", [100, 2000])
def test_one_changed_task_replaces_its_two_index_groups_and_shares_everything_else(nodes):
    # 1,000 then 20,000 tasks on half as many services as nodes: the next version copies the
    # groups of the changed task's node and service alone, and shares every other group and
    # every other table with the version before, however large the state.
    state = spread_state(nodes, 10, services=nodes // 2)
    before = version_of(state)
    assert state.apply(ReportTaskStatus("n7", 3.0, (TaskReport("t7-3", "starting"),))).ok
    after = next_version(before, state)
    replaced = [
        (key, value)
        for key, index in after.indexes.items()
        for value, group in index.items()
        if before.indexes[key].get(value) is not group
    ]
    assert replaced == [((TASKS, "node_id"), "n7"), ((TASKS, "service"), f"web{73 % (nodes // 2)}")]
    others = [name for name in after.tables if name != TASKS]
    assert after.shares(before, *others) and not after.shares(before, TASKS)
    assert after.indexed(TASKS, "node_id", "n7")["t7-3"].state == "starting"
