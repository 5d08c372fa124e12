"""Fixtures shared by the integration tests."""

from __future__ import annotations

import contextlib

import pytest

from tests.integration.cluster_support import process_cluster


@pytest.fixture
def fresh(tmp_path):
    """`fresh(size)`: a cluster of its own (not started) for a test that changes its nodes."""
    with contextlib.ExitStack() as stack:
        yield lambda size=3: stack.enter_context(process_cluster(str(tmp_path), size))
