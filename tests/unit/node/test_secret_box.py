"""Sealed secrets: they open only under the same cluster secret and the same name, any
changed byte is refused, and the sealed bytes do not hold the plaintext."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.secrets import SEAL_OVERHEAD
from node.secret_box import SecretBox, SecretSealError

CLUSTER = b"k" * 32
box = SecretBox(CLUSTER)


@given(st.binary(max_size=2048))
def test_round_trip_and_length(plaintext):
    sealed = box.seal("db", plaintext)
    assert len(sealed) == len(plaintext) + SEAL_OVERHEAD
    assert box.open("db", sealed) == plaintext


def test_plaintext_is_not_in_the_sealed_bytes_and_nonces_differ():
    marker = b"MARKER-4f1c9a-" * 4
    first, second = box.seal("db", marker), box.seal("db", marker)
    assert marker[:14] not in first and first != second


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # tag
        lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:],  # ciphertext
        lambda b: b[:5] + bytes([b[5] ^ 1]) + b[6:],  # nonce
    ],
)
def test_tampering_is_refused(change):
    sealed = box.seal("db", b"hunter2 hunter2")
    with pytest.raises(SecretSealError, match="does not open"):
        box.open("db", change(sealed))


@pytest.mark.parametrize(
    "sealed_for, opened_as, opener, error",
    [
        ("db", "db2", box, "does not open"),
        ("db", "db", SecretBox(b"o" * 32), "does not open"),
    ],
)
def test_wrong_name_or_cluster_is_refused(sealed_for, opened_as, opener, error):
    with pytest.raises(SecretSealError, match=error):
        opener.open(opened_as, box.seal(sealed_for, b"hunter2"))


@pytest.mark.parametrize(
    "sealed, error",
    [
        (b"", "shorter than a sealed secret"),
        (b"\x02" + b"\x00" * 40, "data.version"),
    ],
)
def test_malformed_is_refused_naming_the_field(sealed, error):
    with pytest.raises(SecretSealError, match=error):
        box.open("db", sealed)
