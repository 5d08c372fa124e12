"""How the API answers a node reference: the node, a 404, or a 400 naming every node an
ambiguous prefix matches."""

from __future__ import annotations

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import Node
from consensus.nodes import nodes
from consensus.state import ClusterState
from node.api.cluster import node_by_ref
from node.api.http_util import HttpError


def _state(*ids: str) -> ClusterState:
    state = ClusterState()
    for i, node_id in enumerate(ids, 1):
        nodes(state)[node_id] = Node(node_id, f"n{i}", f"127.0.0.{i}", 7420, 7421, 7422)
    return state


def test_the_api_names_every_node_an_ambiguous_prefix_matches():
    state = _state("ab12", "ab34")
    with pytest.raises(HttpError) as ambiguous:
        node_by_ref(state, "ab")
    assert (ambiguous.value.status, ambiguous.value.field) == (400, "node")
    assert "n1 (ab12)" in ambiguous.value.message and "n2 (ab34)" in ambiguous.value.message
    with pytest.raises(HttpError) as missing:
        node_by_ref(state, "zz")
    assert missing.value.status == 404
    assert node_by_ref(state, "ab3").name == "n2"
