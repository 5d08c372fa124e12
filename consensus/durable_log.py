"""Raft's log on stable storage before anything depends on it, one fdatasync for many entries.

pysyncobj writes its journal through an mmap and never syncs it: after a power cut on every
node, acknowledged writes were gone. `DurableLog` wraps one replica's journal object and
transport (handed over by consensus.raft, which owns every pysyncobj private name) so that:

- a follower fdatasyncs the entries it appended before it tells the leader it has them
  (the `next_node_idx` answer the leader counts toward commit);
- a leader fdatasyncs the entries it appended in a tick at the end of that tick,
  after it sent them to the followers and before it waits for their answers: its own write
  overlaps the round trip instead of following it (Raft's §10.2.1). Its commit index moving
  syncs again anything still unsynced, so nothing is applied (and so no client answered)
  and no follower hears of the commit before the leader's copy is on disk;
- a vote or a new term is on disk before the vote or any message of that term leaves, and
  the meta file holding them is never replaced by one that is not on disk yet (pysyncobj
  renames its unsynced rewrite into place, once a second: on a filesystem that does not
  write a file's data before its rename, such as xfs, a power cut could leave it empty,
  and the node would forget its term and vote and could vote twice in a term);
- a snapshot file is on disk before the journal entries it replaces are dropped: the
  leader's own (compaction) and one a follower received from the leader (pysyncobj clears
  the journal for it, and the follower then acknowledges it and every entry after it).

Group commit falls out of where the syncs sit: every entry appended since the last sync
(all the writes proposed during one round trip on the leader, every entry of one
AppendEntries on a follower) shares one fdatasync. fdatasync on a descriptor of its own
flushes the file's pages whichever mapping dirtied them (Linux's page cache is per file).
All of it runs on pysyncobj's thread.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any

import pysyncobj.pickle as pysyncobj_pickle

from consensus.peer_message import PeerMessage

# The answer that tells the leader this node holds entries (it counts toward commit).
_NEEDS_DURABLE_LOG = frozenset({"next_node_idx"})


def _fsync_path(path: str, *, data_only: bool = True) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        (os.fdatasync if data_only else os.fsync)(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    """A rename or a new file survives a power cut only once its directory is synced."""
    _fsync_path(os.path.dirname(os.path.abspath(path)) or ".", data_only=False)


def _store_meta(path: str, meta: dict[str, Any]) -> None:
    """pysyncobj's meta file, written as it writes it, synced before the rename that puts it
    in place and the directory after (a vote is answered only once this returns)."""
    temporary = path + ".tmp"
    with open(temporary, "wb") as f:
        f.write(pysyncobj_pickle.dumps(meta))
        f.flush()
        os.fdatasync(f.fileno())
    os.replace(temporary, path)
    _fsync_dir(path)


class DurableLog:
    """Syncs one pysyncobj journal at the points above. `syncs` counts fdatasyncs of the
    journal, `synced_index` is the Raft index of the last entry the latest one covered."""

    def __init__(
        self,
        journal: Any,
        journal_path: str,
        dump_path: str | None,
        transport: Any,
        meta_storer: Any,
    ) -> None:
        self._journal = journal
        self._path = journal_path
        self._dump = dump_path
        self._fd = os.open(journal_path, os.O_RDONLY)
        # Anything pysyncobj wrote before these wrappers were in place is synced first.
        self._pending = 1
        self._lock = threading.Lock()
        self.syncs = 0
        self.synced_index = 0
        self._wrap(journal, "add", self._after_write)
        self._wrap(journal, "deleteEntriesFrom", self._after_write)
        self._wrap(journal, "clear", self._after_write)
        self._wrap(journal, "clear", self._sync_dump, before=True)
        self._wrap(journal, "setRaftCommitIndex", self.sync, before=True)
        self._wrap(journal, "deleteEntriesTo", self._before_compaction, before=True)
        meta_storer.storeMeta = functools.partial(_store_meta, meta_storer.getPath())
        send = transport.send

        def durable_send(node: Any, message: PeerMessage) -> Any:
            if message.get("type") in _NEEDS_DURABLE_LOG:
                self.sync()
            return send(node, message)

        transport.send = durable_send

    @staticmethod
    def _wrap(obj: Any, name: str, hook: Callable[[], None], before: bool = False) -> None:
        original = getattr(obj, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if before:
                hook()
            result = original(*args, **kwargs)
            if not before:
                hook()
            return result

        setattr(obj, name, wrapped)

    def _after_write(self) -> None:
        self._pending += 1

    def sync(self) -> None:
        """fdatasync the journal if anything was written since the last time."""
        with self._lock:
            pending, self._pending = self._pending, 0
            if not pending or self._fd < 0:
                return
            last = self._journal[-1][1] if len(self._journal) else 0
            os.fdatasync(self._fd)
            self.syncs += 1
            self.synced_index = last

    def _sync_dump(self) -> None:
        # The snapshot replaces the entries about to be dropped: it must be on disk first.
        if self._dump and os.path.exists(self._dump):
            _fsync_path(self._dump)
            _fsync_dir(self._dump)

    def _before_compaction(self) -> None:
        self._sync_dump()
        self.sync()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
