"""The cluster's CA as the replicated state holds it: the trusted certificates and the
current key, sealed with the cluster secret (so every node that holds the state and the
secret can sign, and nothing in a copy of the Raft log or a snapshot opens it without the
secret)."""

from __future__ import annotations

from consensus.model import ClusterInfo, Node
from node.pki.authority import Authority, fingerprint, sign_node
from node.secret_box import SecretBox
from node.security import ClusterKeys, JoinToken

_SEAL_NAME = "cluster CA key"


class NoAuthority(LookupError):
    """The state holds no CA yet (the cluster is still being bootstrapped)."""


def seal_ca_key(keys: ClusterKeys, key_pem: bytes) -> bytes:
    return SecretBox(keys.secret).seal(_SEAL_NAME, key_pem)


def bundle(info: ClusterInfo) -> bytes:
    """The CAs nodes trust, as one PEM bundle (the current one first)."""
    return "".join(info.ca_certificates).encode()


def current_token(info: ClusterInfo, keys: ClusterKeys) -> JoinToken:
    if not info.ca_certificates:
        raise NoAuthority("the cluster has no CA yet: it is still being bootstrapped")
    return keys.join_token(fingerprint(info.ca_certificates[0].encode()), info.join_generation)


def issue(info: ClusterInfo, keys: ClusterKeys, csr_pem: bytes, node: Node, *,
          lifetime: float, now: float) -> bytes:
    """A certificate for `node` (as the state records it) from its CSR."""
    if not info.ca_certificates or not info.ca_key_sealed:
        raise NoAuthority("the cluster has no CA yet: it is still being bootstrapped")
    key_pem = SecretBox(keys.secret).open(_SEAL_NAME, info.ca_key_sealed)
    authority = Authority(info.ca_certificates[0].encode(), key_pem)
    return sign_node(authority, csr_pem, node_id=node.id, address=node.address,
                     lifetime=lifetime, now=now)
