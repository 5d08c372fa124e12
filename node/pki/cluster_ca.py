"""The cluster's CA as the replicated state holds it: the trusted certificates and the
current key, sealed with the cluster secret (so every node that holds the state and the
secret can sign, and nothing in a copy of the Raft log or a snapshot opens it without the
secret)."""

from __future__ import annotations

from consensus.model import ClusterInfo, Node
from consensus.nodes import RotateCa
from node.config import NodeConfig
from node.pki.authority import (
    Authority,
    create_authority,
    cross_sign,
    fingerprint,
    make_csr,
    new_key_pem,
    sign_node,
)
from node.pki.store import NodeTls
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


def _authority(info: ClusterInfo, keys: ClusterKeys) -> Authority:
    if not info.ca_certificates or not info.ca_key_sealed:
        raise NoAuthority("the cluster has no CA yet: it is still being bootstrapped")
    key_pem = SecretBox(keys.secret).open(_SEAL_NAME, info.ca_key_sealed)
    return Authority(info.ca_certificates[0].encode(), key_pem)


def issue(
    info: ClusterInfo,
    keys: ClusterKeys,
    csr_pem: bytes,
    node: Node,
    *,
    lifetime: float,
    now: float,
    csr_names: str = "",
) -> bytes:
    """A certificate for `node` (as the state records it) from its CSR, followed by the
    current root cross-signed by the previous one after a rotation."""
    leaf = sign_node(
        _authority(info, keys),
        csr_pem,
        node_id=node.id,
        address=node.address,
        lifetime=lifetime,
        now=now,
        csr_names=csr_names,
    )
    return leaf + info.ca_cross_signed.encode()


def founding_node_tls(
    authority: Authority, node_id: str, config: NodeConfig, now: float
) -> NodeTls:
    """The key and certificate of the node that made `authority` (a new cluster, or one
    restored from a snapshot): the CA signs its certificate directly, as it will others'."""
    key = new_key_pem()
    certificate = sign_node(
        authority,
        make_csr(node_id, key, config.host_names),
        node_id=node_id,
        address=config.advertise,
        lifetime=config.cert_lifetime,
        now=now,
    )
    return NodeTls(authority.cert_pem, certificate, key)


def rotation(info: ClusterInfo, keys: ClusterKeys, now: float) -> RotateCa:
    """A new root, trusted beside the current one (which signs it across) until the next
    rotation; nodes move to certificates of the new root as they see it (node.loops)."""
    old = _authority(info, keys)
    new = create_authority(info.cluster_id, now)
    return RotateCa(
        replaces=info.ca_certificates[0],
        certificates=(new.cert_pem.decode(), info.ca_certificates[0]),
        key_sealed=seal_ca_key(keys, new.key_pem),
        cross_signed=cross_sign(new, old).decode(),
    )
