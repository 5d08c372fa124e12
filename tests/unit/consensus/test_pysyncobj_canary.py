"""pysyncobj's private names that Shoal reads or writes exist in the installed version.

Each one is listed in `consensus.raft.PYSYNCOBJ_PRIVATE` and used nowhere else; an upgrade
that renames one fails here instead of silently turning a fix off."""

from __future__ import annotations

import contextlib
import pathlib
import re
from collections.abc import Iterator

import pytest
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.poller import createPoller
from pysyncobj.tcp_connection import TcpConnection

from consensus.raft import (
    PYSYNCOBJ_CONNECTION_PRIVATE,
    PYSYNCOBJ_JOURNAL_PRIVATE,
    PYSYNCOBJ_PRIVATE,
    PYSYNCOBJ_TRANSPORT_PRIVATE,
)
from tests.unit.consensus.test_raft_changes import free_port

ROOT = pathlib.Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def _syncobj(**conf: object) -> Iterator[SyncObj]:
    """A SyncObj configured as consensus.raft runs it: unbatched appends (which create the
    pipe notifier), ticked by no thread."""
    syncobj = SyncObj(
        f"127.0.0.1:{free_port()}",
        [],
        SyncObjConf(autoTick=False, appendEntriesUseBatch=False, **conf),
    )
    try:
        yield syncobj
    finally:
        syncobj.destroy()


@pytest.mark.parametrize("name", PYSYNCOBJ_PRIVATE)
def test_each_private_name_exists_on_a_running_syncobj(name):
    with _syncobj() as syncobj:
        assert hasattr(syncobj, name), f"pysyncobj no longer has {name}"


@pytest.mark.parametrize("name", PYSYNCOBJ_CONNECTION_PRIVATE)
def test_each_private_name_exists_on_a_connection(name):
    assert hasattr(TcpConnection(createPoller("auto")), name), f"pysyncobj no longer has {name}"


@pytest.mark.parametrize("name", PYSYNCOBJ_TRANSPORT_PRIVATE)
def test_each_private_name_exists_on_a_running_transport(name):
    with _syncobj() as syncobj:
        transport = syncobj._SyncObj__transport
        assert hasattr(transport, name), f"pysyncobj's transport no longer has {name}"


@pytest.mark.parametrize("name", PYSYNCOBJ_JOURNAL_PRIVATE)
def test_each_private_name_exists_on_a_file_journal(name, tmp_path):
    with _syncobj(journalFile=str(tmp_path / "j.journal")) as syncobj:
        journal = syncobj._SyncObj__raftLog
        assert hasattr(journal, name), f"pysyncobj's file journal no longer has {name}"


def test_private_names_are_used_only_in_the_adapter():
    sources = {
        str(path.relative_to(ROOT)): path.read_text()
        for package in ("consensus", "node", "scheduler", "netoverlay", "bench")
        for path in (ROOT / package).rglob("*.py")
    }
    for name in (
        *PYSYNCOBJ_PRIVATE,
        *PYSYNCOBJ_CONNECTION_PRIVATE,
        *PYSYNCOBJ_JOURNAL_PRIVATE,
        "_SyncObj__",
        "_TcpConnection__",
    ):
        users = {path for path, text in sources.items() if name in text}
        assert users == {"consensus/raft.py"}, f"{name} used in {sorted(users)}"


def test_the_adapter_reaches_no_private_name_it_does_not_list():
    """Every `_name` the adapter reads off a SyncObj (`so`, `syncobj`) is in the list."""
    text = (ROOT / "consensus" / "raft.py").read_text()
    reached = set(re.findall(r"\b(?:so|syncobj|self\._syncobj)\.(_\w+)", text))
    assert reached and reached <= set(PYSYNCOBJ_PRIVATE), reached - set(PYSYNCOBJ_PRIVATE)
