"""pysyncobj's private names that Shoal reads or writes exist in the installed version.

Each one is listed in `consensus.raft.PYSYNCOBJ_PRIVATE` and used nowhere else; an upgrade
that renames one fails here instead of silently turning a fix off."""

from __future__ import annotations

import pathlib

import pytest
from pysyncobj import SyncObj, SyncObjConf

from consensus.raft import PYSYNCOBJ_PRIVATE
from tests.unit.consensus.test_raft_changes import free_port

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", PYSYNCOBJ_PRIVATE)
def test_each_private_name_exists_on_a_running_syncobj(name):
    syncobj = SyncObj(f"127.0.0.1:{free_port()}", [], SyncObjConf(autoTick=False))
    try:
        assert hasattr(syncobj, name), f"pysyncobj no longer has {name}"
    finally:
        syncobj.destroy()


def test_private_names_are_used_only_in_the_adapter():
    users = {
        str(path.relative_to(ROOT))
        for package in ("consensus", "node", "scheduler", "netoverlay")
        for path in (ROOT / package).rglob("*.py")
        if "_SyncObj__" in path.read_text()
    }
    assert users == {"consensus/raft.py"}
