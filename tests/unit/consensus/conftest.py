"""Fixtures shared by the consensus tests."""

from __future__ import annotations

import pytest

from consensus.raft import RaftNode
from tests.unit.consensus.test_raft_changes import free_port


@pytest.fixture
async def three(tmp_path):
    """Three in-process Raft voters on loopback."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    made = [
        RaftNode(data_dir=str(tmp_path / f"n{i}"), address=a, password="t")
        for i, a in enumerate(addresses)
    ]
    for node in made:
        node.start("voter", addresses)
    yield made
    for node in made:
        node.stop()
