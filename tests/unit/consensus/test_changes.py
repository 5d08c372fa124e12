"""Each applied command's row changes: what they record, and the bound on what is kept."""

from __future__ import annotations

import consensus  # noqa: F401  (registers commands and tables)
from consensus import changes
from consensus.changes import Change, ChangeLog, RowChange
from consensus.services import parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import CreateService, DeleteService, UpdateService, services


def _spec(image: str = "busybox"):
    return parse_service_spec({"name": "web", "image": image})


def test_a_command_records_each_row_it_added_replaced_or_removed_with_its_time():
    state = ClusterState()
    state.apply(CreateService("s1", _spec(), 10.0))
    first = services(state)["web"]
    state.apply(UpdateService(_spec("busybox:2"), 20.0))
    state.apply(UpdateService(_spec("busybox:2"), 30.0))  # the same spec: nothing changes
    state.apply(DeleteService("web", 40.0))
    log = state.changes.snapshot()
    assert [(c.index, c.at) for c in log] == [(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0)]
    (created,), (updated,), (), removed = (c.rows for c in log)
    assert (created.table, created.key, created.before, created.after) == (
        "services",
        "web",
        None,
        first,
    )
    assert updated.before is first and updated.after.version == 2
    assert [(r.key, r.after) for r in removed if r.table == "services"] == [("web", None)]


def test_a_snapshot_keeps_no_changes_and_its_tables_record_again():
    state = ClusterState()
    state.apply(CreateService("s1", _spec(), 10.0))
    restored = ClusterState.from_msgpack(state.to_msgpack())
    assert restored.changes.snapshot() == ()
    restored.apply(DeleteService("web", 20.0))
    (change,) = restored.changes.snapshot()
    assert [r.key for r in change.rows if r.table == "services"] == ["web"]


def test_the_log_keeps_the_newest_changes_within_both_bounds(monkeypatch):
    monkeypatch.setattr(changes, "CHANGES_KEPT", 3)
    monkeypatch.setattr(changes, "CHANGED_ROWS_KEPT", 4)
    log = ChangeLog()

    def change(index: int, rows: int) -> Change:
        return Change(index, 0.0, tuple(RowChange("t", str(i), None, i) for i in range(rows)))

    for index in range(1, 6):
        log.append(change(index, 1))
    assert [c.index for c in log.snapshot()] == [3, 4, 5]
    log.append(change(6, 3))
    assert [c.index for c in log.snapshot()] == [5, 6]  # 4 rows
    log.append(change(7, 9))  # larger than the bound alone: still kept, as the newest
    assert [c.index for c in log.snapshot()] == [7]
