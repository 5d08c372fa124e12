"""Named volumes in the state: which slot's data is where, and the `volume ls` table."""

from __future__ import annotations

import pytest

from consensus.services import SpecError, parse_service_spec
from consensus.tasks import Service, SpecVersion, Task
from consensus.volumes import VolumeUse, keeps_local_data, named_volumes, slot_homes, volume_table
from tests.unit.scheduler.helpers import make_node


def spec(name: str, *volumes: str, **plain) -> object:
    return parse_service_spec({"name": name, "image": "busybox", "volumes": list(volumes), **plain})


def test_only_named_volumes_count():
    s = spec("db", "data:/data", "/srv:/srv:ro", "/scratch", {"type": "tmpfs", "target": "/t"})
    assert named_volumes(s) == ("data",)
    assert keeps_local_data(s)
    assert not keeps_local_data(spec("db", "data:/data", volume_affinity="none"))
    assert not keeps_local_data(spec("db", "/srv:/srv"))


def task(
    tid: str, service: Service, slot: int, node: str, created: float, version: int = 1
) -> Task:
    return Task(tid, service.id, service.name, slot, version, node_id=node, created_at=created)


def test_a_slot_home_is_its_newest_placed_task_with_a_named_volume():
    db = Service("s1", spec("db", "data:/data"), version=2, history=(SpecVersion(1, spec("db")),))
    tasks = [
        task("a", db, 1, "n1", 1.0, version=2),
        task("b", db, 1, "n2", 2.0, version=2),
        task("c", db, 1, "", 3.0, version=2),  # pending: never ran anywhere
        task("d", db, 2, "n3", 1.0, version=2),
        task("e", db, 2, "n1", 4.0, version=1),
    ]
    homes = slot_homes(tasks, {"s1"}, lambda t: db.spec_at(t.spec_version))
    # Slot 2's newest task ran a version without the volume: it left no data on n1.
    assert homes == {("s1", 1): "n2", ("s1", 2): "n3"}
    assert slot_homes(tasks, {"other"}, lambda t: db.spec_at(t.spec_version)) == {}


def test_volume_table_lists_users_and_holders_by_name():
    db = Service(
        "s1",
        spec("db", "data:/data", "logs:/logs"),
        version=2,
        history=(SpecVersion(1, spec("db", "old:/old")),),
    )
    web = Service("s2", spec("web", "logs:/var/log"))
    nodes = {n.id: n for n in (make_node(1), make_node(2))}
    tasks = [
        task("a", db, 1, "n1", 1.0, version=2),
        task("b", db, 1, "n2", 1.0, version=1),
        task("c", web, 1, "n2", 1.0),
        task("d", web, 2, "gone", 1.0),
        task("e", db, 2, "", 1.0),
    ]
    assert volume_table({"db": db, "web": web}, tasks, nodes) == (
        VolumeUse("data", ("db",), ("node1",)),
        VolumeUse("logs", ("db", "web"), ("gone", "node1", "node2")),
        VolumeUse("old", ("db",), ("node2",)),
    )


@pytest.mark.parametrize(
    "plain, field, reason",
    [
        ({"volumes": ["bad name:/data"]}, "volumes[0].source", "is not a volume name"),
        ({"volumes": ["-x:/data"]}, "volumes[0].source", "is not a volume name"),
        (
            {"volumes": [{"type": "tmpfs", "source": "x", "target": "/t"}]},
            "volumes[0].source",
            "a tmpfs mount has no source",
        ),
        ({"volumes": ["data:relative"]}, "volumes[0].target", "must be an absolute path"),
        ({"volume_affinity": "sometimes"}, "volume_affinity", "sometimes"),
    ],
)
def test_bad_volumes_name_the_field(plain, field, reason):
    with pytest.raises(SpecError) as caught:
        parse_service_spec({"name": "db", "image": "busybox", **plain})
    assert caught.value.field == field and reason in caught.value.reason
