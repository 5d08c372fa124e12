"""Cluster secrets: the join token and the keys derived from the cluster secret.

Every key the cluster uses is derived from the cluster secret with HKDF under a distinct
label. The join token holds neither: it carries the SHA-256 of the cluster CA's certificate
and a join secret (`SHOAL2-<CA digest>-<join secret>`, as Swarm's `SWMTKN-1-...`). The joiner
pins the CA by the digest before it trusts the cluster, and proves it holds the join secret
with an HMAC over its own registration; the join secret is derived from the cluster secret
and the token's generation in the replicated state, so rotating the token (the next
generation) makes the old one useless, and the cluster secret reaches the joiner only in
the answer to an accepted join, over TLS to the pinned CA.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from netoverlay.crypto import derive_key

TOKEN_PREFIX = "SHOAL2"
RECOVERY_PREFIX = "SHOALKEY1"
_RECOVERY_RE = re.compile(r"^SHOALKEY1-([0-9a-f]{16})-([A-Z2-7]{52})$")
_TOKEN_RE = re.compile(r"^SHOAL2-([0-9a-f]{64})-([A-Z2-7]{32})$")
_JOIN_SECRET_BYTES = 20


class TokenError(ValueError):
    pass


NODE_HEADER = "X-Shoal-Node"
NODE_KEY_HEADER = "X-Shoal-Node-Key"


def key_hash(node_key: str) -> str:
    return hashlib.sha256(node_key.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class NodeCredentials:
    """What a node presents on calls to other nodes: its id and its own key."""

    node_id: str
    node_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {NODE_HEADER: self.node_id, NODE_KEY_HEADER: self.node_key}

    @property
    def key_hash(self) -> str:
        return key_hash(self.node_key)


def key_matches(presented_key: str, registered_hash: str) -> bool:
    return bool(registered_hash) and hmac.compare_digest(key_hash(presented_key), registered_hash)


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class JoinToken:
    ca_digest: str
    secret: bytes

    @staticmethod
    def parse(token: str) -> JoinToken:
        token = token.strip()
        if token.startswith("SHOAL1-"):
            raise TokenError(
                "this join token is of an older format (SHOAL1-...) without the "
                "cluster CA's fingerprint, so the cluster cannot be verified with "
                "it: get the current token with `shoal cluster token` on a member"
            )
        match = _TOKEN_RE.match(token)
        if not match:
            raise TokenError(
                "malformed join token: expected SHOAL2-<CA digest>-<secret>, "
                "as printed by `shoal cluster token`"
            )
        padding = "=" * (-len(match.group(2)) % 8)
        return JoinToken(match.group(1), base64.b32decode(match.group(2) + padding))

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}-{self.ca_digest}-{_b32(self.secret)}"

    def proof(self, payload: bytes) -> str:
        return hmac.new(derive_key(self.secret, "join"), payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class ClusterKeys:
    cluster_id: str
    secret: bytes

    @staticmethod
    def generate() -> ClusterKeys:
        return ClusterKeys(secrets.token_hex(8), secrets.token_bytes(32))

    def join_token(self, ca_digest: str, generation: int) -> JoinToken:
        secret = derive_key(self.secret, f"join token {generation}")[:_JOIN_SECRET_BYTES]
        return JoinToken(ca_digest, secret)

    @property
    def recovery_key(self) -> str:
        """The cluster id and secret in one string, as Swarm's unlock key: what a restore
        from a snapshot needs to check the snapshot's seal and open its secrets. Kept by
        the operator beside the backups, never in them."""
        return f"{RECOVERY_PREFIX}-{self.cluster_id}-{_b32(self.secret)}"

    @staticmethod
    def from_recovery_key(key: str) -> ClusterKeys:
        match = _RECOVERY_RE.match(key.strip())
        if not match:
            raise TokenError(
                "malformed recovery key: expected SHOALKEY1-<cluster id>-<secret>, "
                "as printed by `shoal cluster recovery-key`"
            )
        padding = "=" * (-len(match.group(2)) % 8)
        return ClusterKeys(match.group(1), base64.b32decode(match.group(2) + padding))

    @property
    def raft_password(self) -> str:
        return derive_key(self.secret, "raft").hex()

    @property
    def api_token(self) -> str:
        """The bearer token for the HTTP API over TCP, from clients and between nodes."""
        return derive_key(self.secret, "api").hex()

    @property
    def overlay_ipsec_key(self) -> bytes:
        """What the IPsec keys of encrypted overlay networks are derived from."""
        return derive_key(self.secret, "overlay-ipsec")

    def check_join_proof(self, generation: int, payload: bytes, proof: str) -> bool:
        expected = self.join_token("", generation).proof(payload)
        return hmac.compare_digest(expected.encode(), proof.encode("utf-8", "surrogateescape"))

    def snapshot_seal(self, sha256: str) -> str:
        """Binds a snapshot's digest to this cluster's secret (consensus.snapshot)."""
        return hmac.new(
            derive_key(self.secret, "snapshot"),
            f"{self.cluster_id}:{sha256}".encode(),
            hashlib.sha256,
        ).hexdigest()

    def check_snapshot_seal(self, sha256: str, seal: str) -> bool:
        return hmac.compare_digest(
            self.snapshot_seal(sha256).encode(), seal.encode("utf-8", "surrogateescape")
        )

    def check_api_token(self, presented: str) -> bool:
        # As bytes: compare_digest refuses a str with non-ASCII characters (a TypeError).
        return hmac.compare_digest(
            self.api_token.encode(), presented.encode("utf-8", "surrogateescape")
        )


# A scoped API token: `SHOALT-<id>-<secret>`. The id finds its row in the replicated state
# (consensus.tokens), which holds only key_hash(token); the secret is 256 random bits.
USER_TOKEN_PREFIX = "SHOALT-"
_USER_TOKEN_RE = re.compile(r"^SHOALT-([0-9a-f]{16})-[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True, slots=True)
class NewUserToken:
    id: str
    token: str  # shown once, to whoever created it

    @staticmethod
    def generate() -> NewUserToken:
        token_id = secrets.token_hex(8)
        return NewUserToken(token_id, f"{USER_TOKEN_PREFIX}{token_id}-{secrets.token_urlsafe(32)}")

    @property
    def hash(self) -> str:
        return key_hash(self.token)


def user_token_id(presented: str) -> str:
    """The id of a scoped token, or "" when `presented` is not shaped as one."""
    match = _USER_TOKEN_RE.match(presented)
    return match.group(1) if match else ""
