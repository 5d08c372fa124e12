"""The rotation's sequence against a real state machine and a gossip stand-in whose nodes
announce what they hold: the order of the steps, a node that never announces (the rotation
stops, names it, and leaves a ring every node can use), and one rotation at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus.gossip_keys import gossip_keys, primary_key
from consensus.model import Node
from consensus.nodes import NODES
from consensus.state import ClusterState, Result
from netoverlay.gossip.keyring import key_id
from netoverlay.gossip.model import Event, Member, TableEntry
from node.gossip_rotation import Rotation, RotationError
from node.loops.gossip_keyring import REPORT_KEY, GossipKeyring, ring_of

SECRET = b"s" * 32


class Gossip:
    """Members that announce the ring the state holds as soon as it changes, except those
    in `silent`; `on_change` listeners are called for every announcement."""

    def __init__(self, state: ClusterState, names: list[str], box) -> None:
        self.state, self.box = state, box
        self.node_ids = names
        self.silent: set[str] = set()
        self.listeners: list[Callable[[Event], None]] = []
        self.announced: dict[str, dict] = {}
        self.announce_all()

    def announce_all(self) -> None:
        spec = ring_of(gossip_keys(self.state).values(), SECRET, self.box)
        for node_id in self.node_ids:
            if node_id not in self.silent:
                self.announced[node_id] = {"primary": spec.primary, "held": sorted(spec.keys)}
        for listener in list(self.listeners):
            listener(None)  # type: ignore[arg-type]

    def members(self) -> list[Member]:
        return [Member(n, ("127.0.0.1", 1)) for n in self.node_ids]

    def on_change(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self.listeners.append(callback)
        return lambda: self.listeners.remove(callback)

    def table_items(self) -> list[TableEntry]:
        return [TableEntry(n, REPORT_KEY, 1, v) for n, v in self.announced.items()]

    @property
    def keyring(self) -> tuple[str, list[str]]:
        spec = ring_of(gossip_keys(self.state).values(), SECRET, self.box)
        return spec.primary, sorted(spec.keys)


@pytest.fixture
def setup():
    state = ClusterState()
    for name in ("n1", "n2", "n3"):
        state.table(NODES)[f"id-{name}"] = Node(f"id-{name}", name, "127.0.0.1", 1, 2, 3)
    keyring = GossipKeyring(lambda: contextlib.nullcontext(state), None, asyncio.Event(), SECRET)
    gossip = Gossip(state, ["id-n1", "id-n2", "id-n3"], keyring.box)
    keyring._gossip = gossip  # type: ignore[assignment]

    async def submit(command) -> Result:
        result = state.apply(command)
        asyncio.get_running_loop().call_soon(gossip.announce_all)
        return result

    rotation = Rotation(lambda: contextlib.nullcontext(state), gossip, keyring, submit)
    return state, gossip, rotation


async def test_a_rotation_installs_waits_switches_and_removes_in_that_order(setup):
    state, _, rotation = setup
    steps = [step async for step in rotation.run(grace=0.0, wait=5.0)]
    assert [s.step for s in steps] == ["installed", "held", "primary", "removed", "done"]
    new = steps[0].key
    assert steps[-1].key == new and steps[3].key == key_id(SECRET)
    assert steps[1].detail == "every live node (3) holds it"
    assert list(gossip_keys(state)) == [new] and primary_key(state).id == new
    again = [step async for step in rotation.run(grace=0.0, wait=5.0)]
    assert [s.key for s in again if s.step == "removed"] == [new]


async def test_a_node_that_never_announces_stops_the_rotation_naming_it(setup):
    state, gossip, rotation = setup
    gossip.silent.add("id-n2")
    steps = []
    with pytest.raises(RotationError) as stopped:
        async for step in rotation.run(grace=0.0, wait=1.0):
            steps.append(step)
    assert stopped.value.status == 503
    assert "n2 (id-n2)" in str(stopped.value) and "within 1 s" in str(stopped.value)
    assert [s.step for s in steps] == ["installed"]
    # Every node still seals with the key it had, and opens the new one.
    assert primary_key(state).id == key_id(SECRET)
    assert set(gossip_keys(state)) == {key_id(SECRET), steps[0].key}


async def test_one_rotation_at_a_time(setup):
    _, gossip, rotation = setup
    gossip.silent.add("id-n3")
    first = rotation.run(grace=0.0, wait=2.0)
    assert (await anext(first)).step == "installed"
    with pytest.raises(RotationError, match="already running"):
        await anext(rotation.run(grace=0.0, wait=2.0))
    await first.aclose()
    gossip.silent.clear()
    assert [s.step async for s in rotation.run(grace=0.0, wait=2.0)][-1] == "done"
