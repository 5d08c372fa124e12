"""Writes a cluster snapshot into DATA_DIR/snapshots every `--snapshot-interval` (the period
of Raft's own compaction), keeping the newest `--snapshot-keep`, when the state moved on.

The snapshot is this node's own copy, which holds committed entries only: it is consistent
at its index whatever the cluster is doing, and taking it needs no leader. It is serialised
in a thread, from a copy taken under the replica's lock, so applying goes on meanwhile."""

from __future__ import annotations

import asyncio
import logging
import time

from consensus.raft import RaftNode
from node import backup
from node.security import ClusterKeys

log = logging.getLogger(__name__)


class SnapshotKeeper:
    def __init__(
        self, raft: RaftNode, keys: ClusterKeys, data_dir: str, *, interval: float, keep: int
    ) -> None:
        self._raft = raft
        self._keys = keys
        self._data_dir = data_dir
        self._interval = interval
        self._keep = keep

    async def run(self) -> None:
        if self._keep <= 0:
            return
        written = -1
        while True:
            await asyncio.sleep(self._interval)
            if self._raft.applied() == written:
                continue
            state, term = backup.capture(self._raft)
            try:
                path = await asyncio.to_thread(self._write, state, term)
            except OSError as exc:
                log.error("could not write a cluster snapshot: %s", exc)
                continue
            written = state.applied
            log.info("cluster snapshot at index %d written to %s", state.applied, path)

    def _write(self, state, term: int) -> str:
        header, payload = backup.encode(state, self._keys, term, time.time())
        return backup.keep(self._data_dir, header, payload, state.applied, self._keep)
