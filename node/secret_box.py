"""Secrets sealed at rest: AES-256-GCM under a key of their own, derived from the cluster secret.

A sealed secret is `version | nonce | ciphertext + tag`. The secret's name is the associated
data, so a ciphertext moved to another name (by anyone who can write the state) does not
open. The node that receives a secret seals it before proposing it; only the nodes whose
tasks use it open it, in memory (node.api.secrets).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from consensus.secrets import SEAL_OVERHEAD
from netoverlay.crypto import derive_key

VERSION = 1
_NONCE = 12
KEY_PURPOSE = "secrets v1"
assert SEAL_OVERHEAD == 1 + _NONCE + 16, "the state machine checks sizes with this overhead"


class SecretSealError(ValueError):
    """A sealed secret that does not open: tampered, for another name, or another cluster's."""


class SecretBox:
    def __init__(self, cluster_secret: bytes) -> None:
        self._aead = AESGCM(derive_key(cluster_secret, KEY_PURPOSE))

    @staticmethod
    def _associated(name: str) -> bytes:
        return f"shoal secret {name}".encode()

    def seal(self, name: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return (
            bytes([VERSION]) + nonce + self._aead.encrypt(nonce, plaintext, self._associated(name))
        )

    def open(self, name: str, sealed: bytes) -> bytes:
        if len(sealed) < SEAL_OVERHEAD:
            raise SecretSealError(f"data: {len(sealed)} bytes is shorter than a sealed secret")
        if sealed[0] != VERSION:
            raise SecretSealError(f"data.version: unsupported sealed-secret version {sealed[0]}")
        nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        try:
            return self._aead.decrypt(nonce, body, self._associated(name))
        except InvalidTag:
            raise SecretSealError(
                f"secret {name!r} does not open: tampered, stored under "
                "another name, or sealed by another cluster"
            ) from None
