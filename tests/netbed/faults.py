"""Faults a test can combine on a bed: partitions, packet loss, links down, killed/paused processes.

    with Faults(bed) as faults:          # leaving the block always heals
        faults.partition([a], [b, c])    # a <-/-> b, a <-/-> c; b <-> c still talk
        faults.one_way([b], [c])         # frames from b to c vanish, c to b still pass
        faults.loss(c, 20)               # 20 % of frames into and out of c vanish
        faults.link_down(b)              # b's cable pulled (its veth on the bridge goes down)
        faults.pause(process)            # SIGSTOP until resume() or heal()
        faults.stall_loop(process)       # its event loop frozen, its other threads run, until heal()
        faults.kill(process)             # kill -9 (heal does not bring it back: respawn it)
        faults.heal()                    # rules flushed, links up, paused processes resumed

Drops (of IP packets; ARP passes) happen in a `bridge` family nftables table on the machine, between bridge ports, so they
are silent like a real network's (a DROP inside the sender's namespace would make UDP sends
fail with EPERM instead). Traffic between a host and the test process (the bridge address) is
not subject to partitions; `link_down` cuts that too.

Delay: this kernel has no sch_netem, so there is no `tc ... netem delay`. Latency has to be
injected by the application's own transport (a delay hook in the code under test), which is
why this module offers none.
"""

from __future__ import annotations

from collections.abc import Iterable

from tests.netbed.bed import Host, NetBed
from tests.netbed.process import HostProcess
from tests.netbed.shell import run
from tests.netbed.stall import ThreadStall


def _quoted(interface: str) -> str:
    return f'"{interface}"'


# Rules drop IP packets only: ARP keeps working, or a one-way cut a -> b would also drop a's
# ARP replies to b and so cut b -> a as well.
_IP_ONLY = ["ether", "type", "{", "ip,", "ip6", "}"]


def drop_between(sources: Iterable[Host], destinations: Iterable[Host]) -> list[list[str]]:
    """Rules (nft tokens) dropping every IP packet from a source host's port to a destination's."""
    return [
        ["iifname", _quoted(src.veth), "oifname", _quoted(dst.veth), *_IP_ONLY, "drop"]
        for src in sources
        for dst in destinations
        if src is not dst
    ]


def drop_random(host: Host, percent: int, direction: str) -> list[list[str]]:
    """Rules dropping `percent` % of the IP packets entering and/or leaving a host's port, at random."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent: must be within 0..100, got {percent}")
    matches = {"in": ["oifname"], "out": ["iifname"], "both": ["oifname", "iifname"]}
    if direction not in matches:
        raise ValueError(f"direction: must be one of {sorted(matches)}, got {direction!r}")
    # "in" = frames delivered to the host, i.e. leaving the bridge through its port.
    return [
        [
            match,
            _quoted(host.veth),
            *_IP_ONLY,
            "numgen",
            "random",
            "mod",
            "100",
            "<",
            str(percent),
            "drop",
        ]
        for match in matches[direction]
    ]


class Faults:
    """Injects faults into one bed and remembers what to undo in `heal()`."""

    def __init__(self, bed: NetBed) -> None:
        self.bed = bed
        self._down: set[Host] = set()
        self._paused: set[HostProcess] = set()
        self._stalls: list[ThreadStall] = []

    def _add(self, rules: list[list[str]]) -> None:
        script = "".join(
            f"add rule bridge {self.bed.nft_table} forward {' '.join(rule)}\n" for rule in rules
        )
        run(["nft", "-f", "-"], input_text=script)

    def partition(self, *groups: Iterable[Host]) -> None:
        """Hosts in different groups cannot reach each other (both directions); hosts that are
        in no group keep talking to everyone."""
        sets = [list(group) for group in groups]
        if len(sets) < 2:
            raise ValueError(f"groups: a partition needs at least two groups, got {len(sets)}")
        self._add(
            [
                rule
                for i, left in enumerate(sets)
                for right in sets[i + 1 :]
                for rule in drop_between(left, right) + drop_between(right, left)
            ]
        )

    def isolate(self, host: Host) -> None:
        """`host` alone on one side, every other host on the other."""
        self.partition([host], [other for other in self.bed.hosts if other is not host])

    def one_way(self, sources: Iterable[Host], destinations: Iterable[Host]) -> None:
        """Frames from `sources` to `destinations` are dropped; the reverse direction passes."""
        self._add(drop_between(list(sources), list(destinations)))

    def loss(self, host: Host, percent: int, direction: str = "both") -> None:
        """Drop `percent` % of frames at `host`'s port: "in" (to it), "out" (from it) or "both"
        (each direction independently, so a round trip loses 1 - (1 - p)^2)."""
        self._add(drop_random(host, percent, direction))

    def link_down(self, host: Host) -> None:
        run(["ip", "link", "set", host.veth, "down"])
        self._down.add(host)

    def link_up(self, host: Host) -> None:
        run(["ip", "link", "set", host.veth, "up"])
        self._down.discard(host)

    def kill(self, process: HostProcess) -> None:
        process.kill()
        self._paused.discard(process)

    def pause(self, process: HostProcess) -> None:
        process.pause()
        self._paused.add(process)

    def resume(self, process: HostProcess) -> None:
        process.resume()
        self._paused.discard(process)

    def stall_loop(self, process: HostProcess) -> None:
        """Freeze the process's main thread (its event loop) alone: tests.netbed.stall."""
        stall = ThreadStall(process.pid)
        stall.freeze()
        self._stalls.append(stall)

    def heal(self) -> None:
        """Undo every network fault, resume paused processes and thaw stalled loops (killed
        ones stay dead)."""
        run(["nft", "flush", "chain", "bridge", self.bed.nft_table, "forward"])
        for host in list(self._down):
            self.link_up(host)
        for process in list(self._paused):
            self.resume(process)
        while self._stalls:
            self._stalls.pop().thaw()

    def __enter__(self) -> Faults:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.heal()
