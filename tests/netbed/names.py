"""Names of a bed's kernel objects, and finding beds whose owner died (pure).

Every object a bed creates carries the bed's id and its owner's pid, so a later run can
recognise leftovers of a crashed or killed run and remove them without touching a bed that
another live test process is using:

    network namespace   shoalnb-<id>-<pid>-h<i>
    bridge              shb<id>        (its alias holds shoalnb-<id>-<pid>: names are <= 15 chars)
    veth, bridge side   shb<id>v<i>    (the namespace side is eth0 inside the namespace)
    nftables table      bridge shoalnb_<id>_<pid>
    iptables comment    shoalnb-<id>-<pid>
    work directory      <tmp>/shoalnb-<id>-<pid>-*
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

PREFIX = "shoalnb"
BRIDGE_PREFIX = "shb"

_OWNER = re.compile(rf"{PREFIX}[-_]([0-9a-f]{{6}})[-_]([0-9]+)")


@dataclass(frozen=True, slots=True)
class BedName:
    """The identity every object of one bed is named after."""

    bed_id: str  # six hex digits
    owner_pid: int

    @property
    def tag(self) -> str:
        return f"{PREFIX}-{self.bed_id}-{self.owner_pid}"

    @property
    def bridge(self) -> str:
        return f"{BRIDGE_PREFIX}{self.bed_id}"

    @property
    def nft_table(self) -> str:
        return f"{PREFIX}_{self.bed_id}_{self.owner_pid}"

    def netns(self, index: int) -> str:
        return f"{self.tag}-h{index}"

    def veth(self, index: int) -> str:
        return f"{self.bridge}v{index}"


def owner_of(name: str) -> BedName | None:
    """The bed an object name (netns, nft table, alias, comment, directory) belongs to, if any."""
    match = _OWNER.search(name)
    if match is None:
        return None
    return BedName(match.group(1), int(match.group(2)))


def stale_beds(names: Iterable[str], alive: Callable[[int], bool]) -> set[BedName]:
    """Beds named in `names` whose owner process is gone."""
    owners = {owner for owner in map(owner_of, names) if owner is not None}
    return {owner for owner in owners if not alive(owner.owner_pid)}
