"""Gossip uses the keyring the replicated state holds, and says which keys it holds.

On every change of the state's keyring (consensus.gossip_keys) this node opens the sealed
keys, hands the ring to its gossip service and announces in its gossip table entry
`gossip-keys` the id of its primary key and of every key it holds: what a rotation waits
for before it makes a key primary and before it takes the old one out (node.gossip_rotation).
The node takes the ring once before it starts gossiping (`refresh`), so a node that was down
while the ring changed comes back speaking the cluster's current keys, never the old ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from consensus.gossip_keys import GOSSIP_KEYS, GossipKey
from consensus.store import StateVersion
from netoverlay.gossip.keyring import KeyringSpec, key_id
from netoverlay.gossip.model import TableEntry
from netoverlay.gossip.service import GossipService
from node.secret_box import SecretBox, SecretSealError

log = logging.getLogger(__name__)

# This node's entry in the gossip table: {"primary": id, "held": [ids]}.
REPORT_KEY = "gossip-keys"
_MAX_REPORTED = 16


def sealed_name(key_id: str) -> str:
    """The name a gossip key is sealed under (never a secret's: those hold no space)."""
    return f"gossip key {key_id}"


def ring_of(rows: Iterable[GossipKey], cluster_secret: bytes, box: SecretBox) -> KeyringSpec:
    """The ring the state's rows describe: the cluster secret's key alone when there are
    none. A row that does not open (another cluster's, tampered) is left out, by id only."""
    keys: dict[str, bytes] = {}
    primary = ""
    for row in rows:
        try:
            key = box.open(sealed_name(row.id), row.sealed) if row.sealed else cluster_secret
        except SecretSealError as exc:
            log.error("gossip key %s: left out of the keyring: %s", row.id, exc)
            continue
        if key_id(key) != row.id:
            log.error("gossip key %s: left out of the keyring: its key has another id", row.id)
            continue
        keys[row.id] = key
        if row.primary:
            primary = row.id
    if not keys:
        return KeyringSpec.single(cluster_secret)
    if not primary:
        primary = sorted(keys)[0]
        log.error("gossip keyring: the primary key does not open here; sealing with %s", primary)
    return KeyringSpec(keys, primary)


@dataclass(frozen=True, slots=True)
class KeyReport:
    """The keys a node announced it holds."""

    primary: str
    held: frozenset[str]


def reports(entries: Iterable[TableEntry]) -> dict[str, KeyReport]:
    """What each node announced, by node id; entries shaped otherwise (from the network)
    are ignored."""
    found: dict[str, KeyReport] = {}
    for entry in entries:
        if entry.key != REPORT_KEY or entry.tombstone:
            continue
        value: Any = entry.value
        if not isinstance(value, Mapping):
            continue
        primary, held = value.get("primary"), value.get("held")
        if not isinstance(primary, str) or not isinstance(held, list):
            continue
        found[entry.owner] = KeyReport(
            primary, frozenset(h for h in held[:_MAX_REPORTED] if isinstance(h, str))
        )
    return found


class GossipKeyring:
    def __init__(
        self,
        read_state: Callable[[], StateVersion],
        gossip: GossipService,
        changed: asyncio.Event,
        cluster_secret: bytes,
    ) -> None:
        """`changed` is set when the state changes."""
        self._read_state = read_state
        self._gossip = gossip
        self._wake = changed
        self._secret = cluster_secret
        self.box = SecretBox(cluster_secret)
        self._rows: Mapping[str, GossipKey] | None = None
        # One rotation at a time from this node (node.gossip_rotation).
        self.rotating = asyncio.Lock()

    def refresh(self) -> bool:
        """Hand gossip the state's ring; True if its keys or its primary key changed."""
        with self._read_state() as state:
            table = state.table(GOSSIP_KEYS)
        # A version shares the tables its commands left alone: most changes leave this one.
        if table is self._rows:
            return False
        self._rows = table
        spec = ring_of(table.values(), self._secret, self.box)
        if self._gossip.keyring == (spec.primary, sorted(spec.keys)):
            return False
        self._gossip.set_keyring(spec)
        log.info("gossip keyring: primary %s, holding %s", spec.primary, ", ".join(spec.keys))
        return True

    def announce(self) -> None:
        primary, held = self._gossip.keyring
        self._gossip.local_set(REPORT_KEY, {"primary": primary, "held": held})

    async def run(self) -> None:
        self.refresh()
        self.announce()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.refresh():
                self.announce()

    def reports(self) -> dict[str, KeyReport]:
        """What every node announced, as this node's gossip table holds it."""
        return reports(self._gossip.table_items())
