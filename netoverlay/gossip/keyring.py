"""The keys gossip accepts and the one it seals with, as memberlist's keyring.

A ring key is 32 bytes from which each channel's key is derived (`derive_key(key,
"gossip/udp")`, `"gossip/tcp"`): the key a cluster starts with is its cluster secret, so a
node that never saw a ring seals exactly as before rings existed. A key is named by its
fingerprint (`key_id`), which says nothing of the key. Opening tries the primary key first,
then the others; a packet no key opens is refused as unauthenticated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from netoverlay.crypto import AuthenticationFailed, Sealer, derive_key

CHANNELS = ("gossip/udp", "gossip/tcp")


def key_id(key: bytes) -> str:
    """A key's fingerprint: 16 hex digits of a hash of a key derived from it."""
    return hashlib.sha256(derive_key(key, "gossip/key id")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class KeyringSpec:
    """What a ring holds: keys by id, and the id of the primary one (a key of `keys`)."""

    keys: Mapping[str, bytes] = field(repr=False)
    primary: str

    def __post_init__(self) -> None:
        if self.primary not in self.keys:
            raise ValueError(f"primary: {self.primary!r} is not a key of the ring")

    @staticmethod
    def single(key: bytes) -> KeyringSpec:
        return KeyringSpec({key_id(key): key}, key_id(key))


class Keyring:
    """The sealers of one channel, one per key of the ring. `update` keeps the sealer (and
    its replay memory) of every key that stays."""

    def __init__(self, channel: str, spec: KeyringSpec, window: float) -> None:
        self._channel = channel
        self._window = window
        self._sealers: dict[str, Sealer] = {}
        self._order: list[Sealer] = []
        self.primary = ""
        self.update(spec)

    def update(self, spec: KeyringSpec) -> None:
        self._sealers = {
            kid: self._sealers.get(kid) or Sealer(derive_key(key, self._channel), self._window)
            for kid, key in spec.keys.items()
        }
        self.primary = spec.primary
        primary = self._sealers[spec.primary]
        self._order = [primary, *(s for s in self._sealers.values() if s is not primary)]

    @property
    def ids(self) -> list[str]:
        return sorted(self._sealers)

    def seal(self, plaintext: bytes, now: float) -> bytes:
        return self._order[0].seal(plaintext, now)

    def open(self, packet: bytes, now: float) -> bytes:
        """The plaintext under whichever key opens it; SealError (its kind says why) if none."""
        for sealer in self._order:
            try:
                return sealer.open(packet, now)
            except AuthenticationFailed:
                continue
        raise AuthenticationFailed("packet: no key of the gossip keyring opens it")
