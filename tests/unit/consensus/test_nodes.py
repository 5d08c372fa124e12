"""How an operator names a node: its id, its name, or any prefix of its id that is unique."""

from __future__ import annotations

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import Node
from consensus.nodes import nodes, nodes_matching
from consensus.state import ClusterState


def _state(*ids: str) -> ClusterState:
    state = ClusterState()
    for i, node_id in enumerate(ids, 1):
        nodes(state)[node_id] = Node(node_id, f"n{i}", f"127.0.0.{i}", 7420, 7421, 7422)
    return state


def _names(state: ClusterState, ref: str) -> list[str]:
    return [n.name for n in nodes_matching(state, ref)]


def test_any_unique_prefix_names_a_node_however_short():
    state = _state("a1b2c3", "f9e8d7")
    assert _names(state, "a") == ["n1"]
    assert _names(state, "f9") == ["n2"]
    assert _names(state, "a1b2c3") == ["n1"]


def test_an_ambiguous_prefix_names_every_node_it_matches():
    state = _state("ab12", "ab34", "cd56")
    assert _names(state, "ab") == ["n1", "n2"]
    assert _names(state, "ab3") == ["n2"]


def test_a_name_wins_over_a_prefix_and_nothing_matches_nothing():
    state = _state("n2aaaa", "bbbb")  # node "n1" has id n2aaaa; node "n2" has id bbbb
    assert _names(state, "n2") == ["n2"]
    assert _names(state, "zz") == []
    assert _names(state, "") == []


def test_a_node_that_is_not_ready_is_taken_back_by_its_machine_only_when_reclaimed():
    import dataclasses

    from consensus.nodes import RegisterNode

    state = ClusterState()
    old = Node(
        "id1",
        "n1",
        "127.0.0.1",
        7420,
        7421,
        7422,
        status="joining",
        key_hash="a" * 64,
        labels={"zone": "a"},
    )
    nodes(state)[old.id] = old
    newcomer = dataclasses.replace(old, status="joining", key_hash="b" * 64, labels={})
    assert not state.apply(RegisterNode(newcomer)).ok  # another key, no reclaim
    taken = state.apply(RegisterNode(newcomer, reclaim=True))
    assert taken.ok and nodes(state)["id1"].key_hash == "b" * 64
    assert nodes(state)["id1"].labels == {"zone": "a"}  # the cluster's, kept
    elsewhere = dataclasses.replace(newcomer, address="127.0.0.9", key_hash="c" * 64)
    assert not state.apply(RegisterNode(elsewhere, reclaim=True)).ok  # another machine
    nodes(state)["id1"] = dataclasses.replace(nodes(state)["id1"], status="ready")
    again = dataclasses.replace(newcomer, key_hash="d" * 64)
    assert not state.apply(RegisterNode(again, reclaim=True)).ok  # a ready node stays its own
