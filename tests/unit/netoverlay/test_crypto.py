"""Key derivation and sealed packets."""

from __future__ import annotations

import pytest

from netoverlay.crypto import (
    OVERHEAD,
    AuthenticationFailed,
    MalformedPacket,
    ReplayedPacket,
    Sealer,
    derive_key,
)

SECRET = b"cluster-secret-0123456789"


def test_keys_differ_per_purpose_and_secret_and_are_stable():
    assert derive_key(SECRET, "gossip/udp") == derive_key(SECRET, "gossip/udp")
    assert derive_key(SECRET, "gossip/udp") != derive_key(SECRET, "raft")
    assert derive_key(SECRET, "raft") != derive_key(SECRET + b"x", "raft")
    assert len(derive_key(SECRET, "api")) == 32


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="secret"):
        derive_key(b"short", "raft")


def test_seal_then_open_and_the_overhead_is_fixed():
    sealer = Sealer(derive_key(SECRET, "t"))
    packet = sealer.seal(b"hello", 1000.0)
    assert len(packet) == 5 + OVERHEAD
    assert b"hello" not in packet
    assert Sealer(derive_key(SECRET, "t")).open(packet, 1000.5) == b"hello"


def test_wrong_key_and_tampering_fail_authentication():
    packet = Sealer(derive_key(SECRET, "t")).seal(b"hello", 1000.0)
    with pytest.raises(AuthenticationFailed):
        Sealer(derive_key(SECRET, "other")).open(packet, 1000.0)
    tampered = bytearray(packet)
    tampered[3] ^= 1  # in the authenticated timestamp
    with pytest.raises(AuthenticationFailed):
        Sealer(derive_key(SECRET, "t")).open(bytes(tampered), 1000.0)


def test_replays_and_stale_packets_are_refused():
    key = derive_key(SECRET, "t")
    packet = Sealer(key).seal(b"x", 1000.0)
    receiver = Sealer(key, window=30.0)
    receiver.open(packet, 1001.0)
    with pytest.raises(ReplayedPacket, match="nonce"):
        receiver.open(packet, 1002.0)
    with pytest.raises(ReplayedPacket, match="timestamp"):
        Sealer(key, window=30.0).open(packet, 1031.0)
    with pytest.raises(ReplayedPacket, match="timestamp"):
        Sealer(key, window=30.0).open(packet, 960.0)


def test_garbage_is_malformed():
    with pytest.raises(MalformedPacket):
        Sealer(derive_key(SECRET, "t")).open(b"\x01short", 0.0)
    with pytest.raises(MalformedPacket, match="version"):
        Sealer(derive_key(SECRET, "t")).open(b"\x09" + bytes(OVERHEAD), 0.0)
