"""The gossip keyring: seals with the primary key, opens under any key of the ring, refuses a
removed key as unauthenticated, and a ring of the cluster secret alone seals as before."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netoverlay.crypto import AuthenticationFailed, ReplayedPacket, Sealer, derive_key
from netoverlay.gossip.keyring import Keyring, KeyringSpec, key_id

SECRET = b"cluster-secret-0123456789abcdef!"
NEW = bytes(range(32))
NOW = 1_000.0


def ring(*keys: bytes, primary: bytes) -> KeyringSpec:
    return KeyringSpec({key_id(k): k for k in keys}, key_id(primary))


def test_a_ring_of_the_cluster_secret_seals_as_gossip_did_before_rings():
    keys = Keyring("gossip/udp", KeyringSpec.single(SECRET), 60.0)
    before = Sealer(derive_key(SECRET, "gossip/udp"))
    assert before.open(keys.seal(b"hello", NOW), NOW) == b"hello"
    assert keys.open(before.seal(b"hi", NOW), NOW) == b"hi"


def test_every_key_opens_the_primary_seals_and_a_removed_key_is_refused():
    old_side = Keyring("gossip/udp", KeyringSpec.single(SECRET), 60.0)
    both = Keyring("gossip/udp", ring(SECRET, NEW, primary=NEW), 60.0)
    assert both.open(old_side.seal(b"from an old node", NOW), NOW) == b"from an old node"
    new_only = Keyring("gossip/udp", KeyringSpec.single(NEW), 60.0)
    assert new_only.open(both.seal(b"sealed with the new key", NOW), NOW)
    both.update(KeyringSpec.single(NEW))
    with pytest.raises(AuthenticationFailed, match="no key of the gossip keyring"):
        both.open(old_side.seal(b"late", NOW), NOW)


def test_channels_have_their_own_keys():
    udp = Keyring("gossip/udp", KeyringSpec.single(NEW), 60.0)
    tcp = Keyring("gossip/tcp", KeyringSpec.single(NEW), 60.0)
    with pytest.raises(AuthenticationFailed):
        tcp.open(udp.seal(b"x", NOW), NOW)


def test_a_key_that_stays_keeps_its_replay_memory():
    keys = Keyring("gossip/udp", KeyringSpec.single(SECRET), 60.0)
    packet = keys.seal(b"once", NOW)
    keys.open(packet, NOW)
    keys.update(ring(SECRET, NEW, primary=NEW))
    with pytest.raises(ReplayedPacket):
        keys.open(packet, NOW)


def test_ids_are_fingerprints_that_name_a_key_and_nothing_more():
    assert key_id(SECRET) == key_id(SECRET) != key_id(NEW)
    assert len(key_id(NEW)) == 16 and NEW.hex()[:16] not in key_id(NEW)
    with pytest.raises(ValueError, match="primary"):
        KeyringSpec({key_id(NEW): NEW}, key_id(SECRET))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=5, unique=True),
    st.data(),
)
def test_whatever_the_ring_a_packet_opens_iff_its_key_is_in_it(keys, data):
    primary = data.draw(st.sampled_from(keys))
    held = data.draw(st.lists(st.sampled_from(keys), unique=True))
    sender = Keyring("gossip/udp", KeyringSpec.single(primary), 60.0)
    receiver_keys = {key_id(k): k for k in {*held, keys[0]}}
    receiver = Keyring("gossip/udp", KeyringSpec(receiver_keys, key_id(keys[0])), 60.0)
    packet = sender.seal(b"payload", NOW)
    if key_id(primary) in receiver_keys:
        assert receiver.open(packet, NOW) == b"payload"
    else:
        with pytest.raises(AuthenticationFailed):
            receiver.open(packet, NOW)
