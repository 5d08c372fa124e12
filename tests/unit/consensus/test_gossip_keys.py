"""The gossip keyring in the state machine: one primary key once a ring exists, never removed
while primary, bounded, kept in snapshots; bad rows refused naming the field."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import consensus  # noqa: F401  (registers commands and tables)
from consensus import codec, protocol
from consensus.gossip_keys import (
    GOSSIP_KEYS,
    MAX_KEYS,
    SEALED_BYTES,
    GossipKey,
    InstallGossipKey,
    RemoveGossipKey,
    UseGossipKey,
    gossip_keys,
    primary_key,
)
from consensus.state import ClusterState


def key(n: int, derived: bool = False) -> GossipKey:
    return GossipKey(f"{n:016x}", b"" if derived else bytes([n % 256]) * SEALED_BYTES, 10.0)


def replayed(state: ClusterState, cmd) -> ClusterState:
    """The command through the wire and a snapshot, as another node holds it."""
    result = state.apply(codec.decode(codec.encode(cmd, "")).command)
    assert result.ok, result.error
    return ClusterState.from_msgpack(state.to_msgpack())


def test_a_rotation_installs_uses_and_removes_and_survives_a_snapshot():
    state = ClusterState()
    assert primary_key(state) is None
    state = replayed(state, InstallGossipKey(key(1, derived=True)))
    assert primary_key(state) == GossipKey(key(1).id, b"", 10.0, primary=True)
    state = replayed(state, InstallGossipKey(key(2)))
    assert primary_key(state).id == key(1).id  # installing does not switch
    state = replayed(state, UseGossipKey(key(2).id))
    assert primary_key(state).id == key(2).id
    assert [k.id for k in gossip_keys(state).values() if k.primary] == [key(2).id]
    state = replayed(state, RemoveGossipKey(key(1).id))
    assert list(gossip_keys(state)) == [key(2).id]
    assert gossip_keys(state)[key(2).id].sealed == key(2).sealed


def test_the_primary_key_cannot_be_removed():
    state = ClusterState()
    state.apply(InstallGossipKey(key(1)))
    result = state.apply(RemoveGossipKey(key(1).id))
    assert (result.ok, result.code) == (False, 409)
    assert "primary" in result.error and result.error.startswith("id:")


def test_unknown_keys_are_404_naming_the_id():
    state = ClusterState()
    for cmd in (UseGossipKey("00000000000000ff"), RemoveGossipKey("00000000000000ff")):
        result = state.apply(cmd)
        assert (result.ok, result.code) == (False, 404)
        assert result.error.startswith("id: no gossip key")


def test_bad_rows_are_refused_naming_the_field():
    state = ClusterState()
    for row, field in (
        (GossipKey("not hex", b""), "key.id"),
        (GossipKey("00000000000000ff", b"x" * 5), "key.sealed"),
        (GossipKey("00000000000000ff", b"", installed_at=-1.0), "key.installed_at"),
    ):
        result = state.apply(InstallGossipKey(row))
        assert (result.ok, result.code) == (False, 400)
        assert result.error.startswith(f"{field}:")
    assert not gossip_keys(state)


def test_the_derived_key_is_only_a_ring_s_first_and_a_key_is_installed_once():
    state = ClusterState()
    state.apply(InstallGossipKey(key(1)))
    assert state.apply(InstallGossipKey(key(1))).code == 409
    refused = state.apply(InstallGossipKey(key(2, derived=True)))
    assert (refused.ok, refused.code) == (False, 409)
    assert refused.error.startswith("key.sealed:")


def test_the_ring_is_bounded():
    state = ClusterState()
    for n in range(MAX_KEYS):
        assert state.apply(InstallGossipKey(key(n + 1))).ok
    refused = state.apply(InstallGossipKey(key(MAX_KEYS + 1)))
    assert (refused.ok, refused.code) == (False, 409)
    assert f"at most {MAX_KEYS}" in refused.error


def test_an_unused_ring_leaves_no_table_in_a_snapshot():
    """A node of the level before refuses unknown tables in a snapshot: until a rotation
    (which waits for every node to reach protocol.GOSSIP_KEYRING) the table is not there."""
    assert protocol.PROTOCOL >= protocol.GOSSIP_KEYRING
    state = ClusterState()
    assert GOSSIP_KEYS not in state.to_plain()["tables"]
    state.apply(InstallGossipKey(key(1)))
    assert GOSSIP_KEYS in state.to_plain()["tables"]


def test_a_sealed_key_is_not_in_a_row_s_repr():
    assert repr(bytes([1]) * 4) not in repr(key(1))


_commands = st.one_of(
    st.builds(lambda n, d: InstallGossipKey(key(n, d)), st.integers(1, 12), st.booleans()),
    st.builds(lambda n: UseGossipKey(key(n).id), st.integers(1, 12)),
    st.builds(lambda n: RemoveGossipKey(key(n).id), st.integers(1, 12)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_commands, max_size=40))
def test_any_sequence_keeps_one_primary_and_every_node_agrees(commands):
    state, other = ClusterState(), ClusterState()
    for cmd in commands:
        before = dict(gossip_keys(state))
        result = state.apply(cmd)
        other.apply(codec.decode(codec.encode(cmd, "")).command)
        ring = gossip_keys(state)
        primaries = [k.id for k in ring.values() if k.primary]
        assert len(primaries) == (1 if ring else 0)
        assert len(ring) <= MAX_KEYS
        if isinstance(cmd, RemoveGossipKey) and cmd.id in before and before[cmd.id].primary:
            assert not result.ok and ring == before
        if not result.ok:
            assert ring == before
    assert other.to_plain()["tables"] == state.to_plain()["tables"]
