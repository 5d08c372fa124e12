"""Join tokens and derived keys."""

from __future__ import annotations

import pytest

from node.security import ClusterKeys, TokenError


def test_token_round_trip_and_keys_depend_on_the_secret():
    keys = ClusterKeys.generate()
    again = ClusterKeys.from_token(keys.token)
    assert again == keys
    other = ClusterKeys.generate()
    assert len({keys.raft_password, keys.api_token, other.raft_password}) == 3
    proof = keys.join_proof(b"payload")
    assert keys.check_join_proof(b"payload", proof)
    assert not other.check_join_proof(b"payload", proof)
    assert not keys.check_join_proof(b"other payload", proof)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "SHOAL1-xyz",
        "SHOAL2-0123456789abcdef-" + "A" * 52,
        "SHOAL1-0123456789abcdef-" + "1" * 52,
    ],
)
def test_malformed_tokens_are_refused_with_a_hint(token):
    with pytest.raises(TokenError, match="shoal cluster token"):
        ClusterKeys.from_token(token)
