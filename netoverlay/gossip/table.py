"""The disseminated key/value table: entries owned by nodes, merged deterministically.

Per (owner, key) the higher version wins; equal versions (an owner that lost its memory and
reused a number) are ordered by tombstone then by the packed value, so every node picks the
same winner whatever order news arrives in: the merge is commutative and idempotent.
"""

from __future__ import annotations

import msgpack

from netoverlay.gossip.model import TableEntry


def _rank(entry: TableEntry) -> tuple[int, bool, bytes]:
    return (entry.version, entry.tombstone, msgpack.packb(entry.value, use_bin_type=True))


def newer(candidate: TableEntry, current: TableEntry | None) -> bool:
    """Whether `candidate` wins over `current` (None: nothing held)."""
    if current is None:
        return True
    if candidate.version != current.version:
        return candidate.version > current.version
    return _rank(candidate) > _rank(current)


class GossipTable:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], TableEntry] = {}
        # When each tombstone was stored, to forget it after the retention time.
        self._tombstones: dict[tuple[str, str], float] = {}

    def merge(self, entry: TableEntry, now: float) -> bool:
        """Keep `entry` if it wins over what is held; True when the table changed."""
        slot = (entry.owner, entry.key)
        if not newer(entry, self._entries.get(slot)):
            return False
        self._entries[slot] = entry
        if entry.tombstone:
            self._tombstones[slot] = now
        else:
            self._tombstones.pop(slot, None)
        return True

    def get(self, owner: str, key: str) -> TableEntry | None:
        return self._entries.get((owner, key))

    def entries(self) -> list[TableEntry]:
        """Everything held, tombstones included (what push-pull sends)."""
        return list(self._entries.values())

    def live(self) -> list[TableEntry]:
        return [e for e in self._entries.values() if not e.tombstone]

    def owned_by(self, owner: str) -> list[TableEntry]:
        return [e for (o, _), e in self._entries.items() if o == owner]

    def drop_owner(self, owner: str) -> list[TableEntry]:
        """Forget every entry of `owner` (it is dead); returns the live ones that went."""
        gone = self.owned_by(owner)
        for e in gone:
            del self._entries[(e.owner, e.key)]
            self._tombstones.pop((e.owner, e.key), None)
        return [e for e in gone if not e.tombstone]

    def purge_tombstones(self, older_than: float) -> None:
        for slot, at in list(self._tombstones.items()):
            if at < older_than:
                del self._tombstones[slot]
                del self._entries[slot]
