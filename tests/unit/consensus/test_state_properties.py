"""Property tests of the replicated state machine: determinism, snapshots, garbage."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

import consensus  # noqa: F401  (registers every command type)
from consensus import codec
from consensus.model import Node, Resources
from consensus.nodes import (
    BootstrapCluster,
    RegisterNode,
    RemoveNode,
    SetNodeRole,
    SetNodeStatus,
    UpdateNode,
)
from consensus.state import ClusterState

NODE_IDS = st.sampled_from(["a1", "b2", "c3", "d4"])
TEXT = st.text(alphabet="abcxyz01", min_size=1, max_size=4)


def _node(node_id: str, port: int) -> Node:
    return Node(
        id=node_id,
        name=f"node-{node_id}",
        address="127.0.0.1",
        api_port=port,
        raft_port=port + 1,
        gossip_port=port + 2,
        resources=Resources(1000, 2**30),
    )


commands = st.one_of(
    st.builds(BootstrapCluster, st.sampled_from(["c1", "c2"]), st.floats(0, 1e9)),
    st.builds(lambda i, p: RegisterNode(_node(i, p)), NODE_IDS, st.integers(1000, 1010)),
    st.builds(
        UpdateNode,
        NODE_IDS,
        st.dictionaries(TEXT, TEXT, max_size=2),
        st.lists(TEXT, max_size=2).map(tuple),
        st.sampled_from([None, "active", "pause", "drain"]),
    ),
    st.builds(SetNodeRole, NODE_IDS, st.sampled_from(["voter", "member"])),
    st.builds(
        SetNodeStatus, NODE_IDS, st.sampled_from(["joining", "ready", "down"]), st.floats(0, 1e9)
    ),
    st.builds(RemoveNode, NODE_IDS),
)
entries = st.lists(st.tuples(commands, st.sampled_from(["", "r1", "r2", "r3"])), max_size=30)


def _run(log: list[tuple[object, str]]) -> ClusterState:
    state = ClusterState()
    for cmd, rid in log:
        state.apply_bytes(codec.encode(cmd, rid))
    return state


@settings(max_examples=150, deadline=None)
@given(entries)
def test_same_commands_in_same_order_give_the_same_state(log):
    assert _run(log).to_msgpack() == _run(log).to_msgpack()


@settings(max_examples=150, deadline=None)
@given(entries)
def test_snapshot_then_restore_is_the_identity(log):
    state = _run(log)
    restored = ClusterState.from_msgpack(state.to_msgpack())
    assert restored.to_plain() == state.to_plain()
    # ... and the restored state goes on exactly like the original.
    more = [(UpdateNode("a1", {"k": "v"}), "r9"), (RemoveNode("b2"), "")]
    for cmd, rid in more:
        assert state.apply(cmd, rid) == restored.apply(cmd, rid)
    assert restored.to_plain() == state.to_plain()


garbage = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda x: msgpack.packb(x),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=5)
                | st.dictionaries(st.text(max_size=3), inner, max_size=3)
            ),
            max_leaves=10,
        ),
    ),
    st.builds(
        lambda tag, payload: msgpack.packb([1, tag, 1, "", payload]),
        st.sampled_from(["node.register", "node.update", "node.status", "nope"]),
        st.dictionaries(
            st.sampled_from(["node", "node_id", "status", "at", "x"]),
            # never strings: a string node_id could make a valid command
            st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.binary(max_size=3)),
            max_size=4,
        ),
    ),
)


@settings(max_examples=300, deadline=None)
@given(entries, garbage)
def test_a_garbage_command_gives_an_error_result_and_changes_nothing(log, junk):
    state = _run(log)
    before = state.to_plain()
    result = state.apply_bytes(junk)
    assert not result.ok and result.error
    after = state.to_plain()
    # Only the applied counter moves, identically on every node.
    assert after.pop("applied") == before.pop("applied") + 1
    assert after == before


def test_a_retried_request_id_is_applied_once():
    state = ClusterState()
    state.apply(RegisterNode(_node("a1", 1000)))
    first = state.apply(UpdateNode("a1", {"n": "1"}), "same")
    state.apply(UpdateNode("a1", {"n": "2"}))
    again = state.apply(UpdateNode("a1", {"n": "1"}), "same")
    assert again == first
    assert state.table("nodes")["a1"].labels == {"n": "2"}
