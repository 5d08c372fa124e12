"""Whether this node's Raft connections may still be plain (consensus.protocol.RAFT_TLS).

The release before Raft over TLS speaks only pysyncobj's plain TCP, encrypted with a key
from the cluster secret. During a rolling upgrade a node of this release accepts such
connections, and falls back to one for a peer that refused TLS, until it sees every node of
the cluster at RAFT_TLS. From then on it is sealed: only TLS, now and after every restart
(a file in the data dir says so). A node that creates a cluster is sealed from the start.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from consensus import protocol

SEAL_FILE = "raft-tls-only"


class RaftGate:
    def __init__(self, data_dir: str, level: Callable[[], int]) -> None:
        """`level` is the cluster's protocol level as this node knows it (the lowest over
        every node; read on the Raft thread)."""
        self._path = os.path.join(data_dir, SEAL_FILE)
        self._level = level
        self.sealed = os.path.exists(self._path)

    def plain(self) -> bool:
        """True while plain connections are allowed (called on the Raft thread)."""
        if self.sealed:
            return False
        if self._level() < protocol.RAFT_TLS:
            return True
        self.seal()
        return False

    def seal(self) -> None:
        if not self.sealed:
            seal_tls_only(os.path.dirname(self._path))
            self.sealed = True


def seal_tls_only(data_dir: str) -> None:
    fd = os.open(os.path.join(data_dir, SEAL_FILE), os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
