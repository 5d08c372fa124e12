"""Keys derived from the cluster secret, and sealed (authenticated, encrypted) packets.

`derive_key(secret, purpose)` gives an independent key per use (gossip datagrams, gossip
streams, Raft, the API...), so a packet captured on one channel is noise on another.

A sealed packet is `version | timestamp (ms) | nonce | AES-256-GCM(ciphertext + tag)` with
the version and timestamp authenticated as associated data. `Sealer.open` rejects anything
malformed, unauthenticated, too old or too far in the future, or seen before within the
window (each nonce is remembered until its timestamp leaves the window).
"""

from __future__ import annotations

import functools
import os
import struct
from collections import deque
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
_HEADER = struct.Struct("!BQ")
_NONCE = 12
_TAG = 16
OVERHEAD = _HEADER.size + _NONCE + _TAG
_SALT = b"shoal cluster key v1"


@functools.lru_cache(maxsize=64)
def derive_key(secret: bytes, purpose: str) -> bytes:
    """A 256-bit key for one `purpose` (HKDF-SHA256, the purpose as `info`). Remembered: the
    API derives its token's key on every request, and a node has a handful of purposes."""
    if not isinstance(secret, bytes) or len(secret) < 16:
        raise ValueError("secret: must be at least 16 bytes")
    if not purpose:
        raise ValueError("purpose: must not be empty")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=f"shoal/{purpose}".encode())
    return hkdf.derive(secret)


RefusalKind = Literal["malformed", "auth", "replay"]


class SealError(ValueError):
    """Why a packet was refused."""

    kind: RefusalKind = "malformed"


class MalformedPacket(SealError):
    kind: RefusalKind = "malformed"


class AuthenticationFailed(SealError):
    kind: RefusalKind = "auth"


class ReplayedPacket(SealError):
    kind: RefusalKind = "replay"


class Sealer:
    """Seals and opens packets under one key. `now` is wall-clock seconds (time.time()):
    timestamps are compared across machines, so `window` must cover clock skew too."""

    def __init__(self, key: bytes, window: float = 60.0) -> None:
        self._aead = AESGCM(key)
        self._window = window
        self._seen: set[bytes] = set()
        self._expiry: deque[tuple[float, bytes]] = deque()

    def seal(self, plaintext: bytes, now: float) -> bytes:
        header = _HEADER.pack(VERSION, int(now * 1000))
        nonce = os.urandom(_NONCE)
        return header + nonce + self._aead.encrypt(nonce, plaintext, header)

    def open(self, packet: bytes, now: float) -> bytes:
        if len(packet) < OVERHEAD:
            raise MalformedPacket(f"packet: {len(packet)} bytes is shorter than a sealed packet")
        version, stamp = _HEADER.unpack_from(packet)
        if version != VERSION:
            raise MalformedPacket(f"packet.version: unsupported version {version}")
        header, nonce = packet[: _HEADER.size], packet[_HEADER.size : _HEADER.size + _NONCE]
        try:
            plaintext = self._aead.decrypt(nonce, packet[_HEADER.size + _NONCE :], header)
        except InvalidTag:
            raise AuthenticationFailed(
                "packet: authentication failed (wrong key or tampered)"
            ) from None
        sent = stamp / 1000
        if abs(now - sent) > self._window:
            raise ReplayedPacket(
                f"packet.timestamp: {now - sent:+.1f} s away from now, outside "
                f"the {self._window:.0f} s window"
            )
        self._forget(now)
        if nonce in self._seen:
            raise ReplayedPacket("packet.nonce: seen before (replayed)")
        self._seen.add(nonce)
        self._expiry.append((sent + self._window, nonce))
        return plaintext

    def _forget(self, now: float) -> None:
        # Packets stamped before now - window are refused by their timestamp anyway. Entries
        # are kept in arrival order, so one with a later expiry can shield older ones for a
        # little while: harmless, they go with it.
        expiry = self._expiry
        while expiry and expiry[0][0] < now:
            self._seen.discard(expiry.popleft()[1])
