"""Join tokens and derived keys."""

from __future__ import annotations

import pytest

from node.security import ClusterKeys, JoinToken, TokenError

DIGEST = "ab" * 32


def test_token_round_trip_and_the_join_secret_depends_on_secret_and_generation():
    keys = ClusterKeys.generate()
    token = keys.join_token(DIGEST, 0)
    assert JoinToken.parse(str(token)) == token and str(token).startswith("SHOAL2-" + DIGEST)
    other = ClusterKeys.generate()
    assert len({keys.raft_password, keys.api_token, other.raft_password}) == 3
    proof = token.proof(b"payload")
    assert keys.check_join_proof(0, b"payload", proof)
    assert not keys.check_join_proof(1, b"payload", proof)  # rotated: the old token fails
    assert not other.check_join_proof(0, b"payload", proof)
    assert not keys.check_join_proof(0, b"other payload", proof)
    # The token holds neither the cluster secret nor anything that derives the next one.
    assert keys.secret.hex() not in str(token) and keys.join_token(DIGEST, 1) != token


@pytest.mark.parametrize(
    "token",
    ["", "SHOAL2-xyz", "SHOAL2-" + "0" * 63 + "-" + "A" * 32, "SHOAL2-" + DIGEST + "-" + "1" * 32],
)
def test_malformed_tokens_are_refused_with_a_hint(token):
    with pytest.raises(TokenError, match="shoal cluster token"):
        JoinToken.parse(token)


def test_an_old_format_token_gets_a_clear_error():
    with pytest.raises(TokenError, match="older format .* fingerprint"):
        JoinToken.parse("SHOAL1-0123456789abcdef-" + "A" * 52)
