"""Fixtures shared by the integration tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from node.runtime import ProcessDriver
from tests.integration.agent_support import NODE, StateSource
from tests.integration.cluster_support import process_cluster
from tests.integration.mesh_support import mesh_cluster


@pytest.fixture
def fresh(tmp_path):
    """`fresh(size)`: a cluster of its own (not started) for a test that changes its nodes."""
    with contextlib.ExitStack() as stack:
        yield lambda size=3: stack.enter_context(process_cluster(str(tmp_path), size))


@pytest.fixture
async def data_dir(tmp_path) -> AsyncIterator[str]:
    """The data directory of an agent under test (as NODE); whatever a test leaves running
    dies with it."""
    path = str(tmp_path / "node")
    yield path
    driver = ProcessDriver(path, node_id=NODE)
    for seen in await driver.list_owned():
        await driver.remove(seen.task_id)


@pytest.fixture
def source() -> StateSource:
    """The state an agent under test (as NODE) reads and reports to."""
    return StateSource(NODE)


@pytest.fixture
async def mesh_trio(tmp_path):
    """A 3-node process cluster whose routing mesh is the proxy data plane."""
    async with mesh_cluster(tmp_path) as cluster:
        yield cluster
