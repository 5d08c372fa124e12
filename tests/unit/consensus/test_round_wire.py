"""The compact payload of a scheduling round: the same round comes back, any garbage is a
CodecError naming the field, and the shared fields are written once per group."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import consensus  # noqa: F401  (registers commands and their payload forms)
from consensus import codec
from consensus.model import Resources
from consensus.services import PortSpec
from consensus.tasks import Assignment, AssignTasks, Explanation, StopTask, Task
from consensus.wire import to_plain

ids = st.text("0123456789abcdef", min_size=1, max_size=8)
tasks = st.builds(
    Task,
    id=ids,
    service_id=st.sampled_from(["s1", "s2"]),
    service=st.sampled_from(["web", "db"]),
    slot=st.integers(0, 50),
    spec_version=st.integers(1, 3),
    node_id=st.sampled_from(["", "n1", "n2"]),
    restarts=st.integers(0, 4),
    message=st.sampled_from(["", "pending: no room"]),
    reserved=st.sampled_from([Resources(), Resources(100, 1 << 20)]),
    host_ports=st.sampled_from([(), (PortSpec(80, 8080, "tcp", "host"),)]),
    created_at=st.sampled_from([0.0, 5.5]),
    updated_at=st.sampled_from([0.0, 5.5]),
)
rounds = st.builds(
    AssignTasks,
    at=st.floats(0, 1e9),
    create=st.lists(tasks, max_size=30).map(tuple),
    stop=st.lists(st.builds(StopTask, ids, st.text(max_size=5)), max_size=3).map(tuple),
    remove=st.lists(ids, max_size=3).map(tuple),
    assign=st.lists(st.builds(Assignment, ids, ids), max_size=30).map(tuple),
    explain=st.lists(st.builds(Explanation, ids, st.text(max_size=5)), max_size=3).map(tuple),
)


@given(rounds)
def test_a_round_comes_back_as_it_went(cmd):
    assert codec.decode(codec.encode(cmd, "r1")).command == cmd


def payload(cmd: AssignTasks) -> dict:
    return msgpack.unpackb(codec.encode(cmd))[4]


def with_payload(plain: dict) -> bytes:
    return msgpack.packb([codec.FORMAT, "tasks.assign", 2, "", plain])


def one_task(**fields) -> Task:
    return Task(
        **{"id": "t1", "service_id": "s1", "service": "web", "slot": 1, "spec_version": 1, **fields}
    )


def test_what_tasks_share_is_written_once():
    many = tuple(
        one_task(id=f"t{i}", slot=i, reserved=Resources(100, 1 << 20)) for i in range(1000)
    )
    plain = payload(AssignTasks(1.0, create=many))
    assert len(plain["create"]) == 1 and len(plain["create"][0]["rows"]) == 1000
    one_by_one = msgpack.packb(to_plain(AssignTasks(1.0, create=many)))
    assert len(msgpack.packb(plain)) * 4 < len(one_by_one)


@pytest.mark.parametrize(
    "break_it, field",
    [
        (lambda p: p["create"][0]["rows"][0].__setitem__(1, "one"), "create[0].rows[0][1]"),
        (lambda p: p["create"][0]["rows"][0].__setitem__(3, True), "create[0].rows[0][3]"),
        (lambda p: p["create"][0]["rows"].append(["t9", 2]), "create[0].rows[1]"),
        (lambda p: p["create"][0]["shared"].__setitem__("id", "x"), "create[0].shared.id"),
        (
            lambda p: p["create"][0]["shared"].__setitem__("state", "dancing"),
            "create[0].shared.state",
        ),
        (lambda p: p["create"][0]["shared"].__setitem__("colour", 1), "create[0].shared.colour"),
        (lambda p: p["create"][0].pop("shared"), "create[0]"),
        (lambda p: p.__setitem__("create", {}), "create"),
        (lambda p: p["assign"][0].__setitem__(1, 7), "assign[0][1]"),
        (lambda p: p.__setitem__("extra", 1), "extra"),
        (lambda p: p.pop("at"), "at"),
    ],
)
def test_garbage_is_refused_naming_the_field(break_it, field):
    plain = payload(AssignTasks(1.0, create=(one_task(),), assign=(Assignment("t1", "n1"),)))
    break_it(plain)
    with pytest.raises(
        codec.CodecError, match=rf"^tasks.assign: {__import__('re').escape(field)}:"
    ):
        codec.decode(with_payload(plain))
