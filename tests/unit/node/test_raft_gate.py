"""Plain Raft connections are allowed only until the cluster has been seen at RAFT_TLS, and
never again after that, across restarts."""

from __future__ import annotations

import os

from consensus import protocol
from node.raft_gate import SEAL_FILE, RaftGate, seal_tls_only


def test_plain_is_allowed_until_every_node_speaks_tls_and_never_again(tmp_path):
    level = protocol.BATCH
    gate = RaftGate(str(tmp_path), lambda: level)
    assert gate.plain() and not os.path.exists(tmp_path / SEAL_FILE)
    level = protocol.RAFT_TLS
    assert not gate.plain()
    assert oct(os.stat(tmp_path / SEAL_FILE).st_mode & 0o777) == "0o600"
    level = protocol.LOWEST  # a node joined and is not heard from yet
    assert not gate.plain()
    assert not RaftGate(str(tmp_path), lambda: protocol.LOWEST).plain()  # after a restart


def test_a_new_cluster_is_sealed_from_the_start(tmp_path):
    seal_tls_only(str(tmp_path))
    assert not RaftGate(str(tmp_path), lambda: protocol.LOWEST).plain()
