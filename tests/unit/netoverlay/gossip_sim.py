"""Small gossip clusters on the in-memory network, built through real joins."""

from __future__ import annotations

from collections import defaultdict

from netoverlay.gossip.config import GossipConfig
from netoverlay.gossip.core import GossipCore
from netoverlay.gossip.model import Address, MemberEvent, MemberState
from netoverlay.gossip.simnet import SimNetwork


def address(i: int) -> Address:
    return (f"10.0.0.{i + 1}", 7422)


def node_id(i: int) -> str:
    return f"n{i}"


def new_core(i: int, net: SimNetwork, config: GossipConfig, seed: int) -> GossipCore:
    return net.add(GossipCore(config, node_id(i), address(i), now=net.now, seed=seed * 1000 + i))


class Cluster:
    """n nodes that joined node 0; records every member state each node went through."""

    def __init__(
        self, n: int, seed: int = 1, config: GossipConfig | None = None, **net_options
    ) -> None:
        self.n = n
        self.seed = seed
        self.config = config or GossipConfig()
        self.net = SimNetwork(seed, **net_options)
        # (observer address, subject id) -> states seen, in order
        self.seen: dict[tuple[Address, str], list[MemberState]] = defaultdict(list)
        self.net.listener = self._record
        for i in range(n):
            new_core(i, self.net, self.config, seed)
        for i in range(1, n):
            self.net.act(address(i), lambda core, now: core.join([address(0)], now))
        assert self.net.run_until_true(lambda: self.all_see(range(n), MemberState.ALIVE), 30)

    def _record(self, observer: Address, event, now: float) -> None:
        if isinstance(event, MemberEvent):
            self.seen[(observer, event.member.node_id)].append(event.member.state)

    def core(self, i: int) -> GossipCore:
        return self.net.cores[address(i)]

    def running(self) -> list[int]:
        return [i for i in range(self.n) if address(i) in self.net.cores]

    def state(self, observer: int, subject: int) -> MemberState | None:
        member = self.core(observer).member(node_id(subject))
        return member.state if member else None

    def all_see(self, subjects, state: MemberState, observers=None) -> bool:
        observers = self.running() if observers is None else observers
        return all(self.state(o, s) == state for o in observers for s in subjects if o != s)

    def ever(self, subject: int, state: MemberState) -> bool:
        """Whether any node ever saw `subject` in `state`."""
        return any(state in states for (_, s), states in self.seen.items() if s == node_id(subject))

    def restart(self, i: int) -> GossipCore:
        """A fresh process at the same address: incarnation 0, empty table."""
        core = new_core(i, self.net, self.config, self.seed + 7)
        return core
