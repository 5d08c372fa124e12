"""Which networks a task asking the overlay's DNS is on: read from the engine on a miss,
shared by concurrent misses, and at most every MISS_INTERVAL for an address no task holds."""

from __future__ import annotations

import asyncio
import threading

from node.overlay.memberships import MISS_INTERVAL, EngineMemberships


class Engine:
    """What the engine holds, read in a worker thread as the real one is."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], tuple[str, ...]] = {}
        self.reads = 0
        self.gate = threading.Event()
        self.gate.set()

    def read(self):
        self.gate.wait(5)
        self.reads += 1
        return dict(self.held)


async def test_a_new_task_is_read_from_the_engine_once():
    engine = Engine()
    memberships = EngineMemberships(engine.read)
    assert memberships.known("front", "10.200.0.2") is None
    engine.held[("front", "10.200.0.2")] = ("back", "front")
    engine.gate.clear()
    asks = [asyncio.create_task(memberships.find("front", "10.200.0.2")) for _ in range(5)]
    await asyncio.sleep(0.05)
    engine.gate.set()
    assert await asyncio.gather(*asks) == [("back", "front")] * 5
    # The first ask's read was under way when the others asked (it may have begun before
    # their task joined): one more read serves them all.
    assert engine.reads == 2, "concurrent misses share a read"
    assert memberships.known("front", "10.200.0.2") == ("back", "front")


async def test_an_address_no_task_holds_is_read_again_only_after_a_while():
    now = [100.0]
    engine = Engine()
    memberships = EngineMemberships(engine.read, clock=lambda: now[0])
    for _ in range(3):
        assert await memberships.find("front", "10.200.0.9") == ("front",)
    assert engine.reads == 1
    now[0] += MISS_INTERVAL
    engine.held[("front", "10.200.0.9")] = ("front", "back")
    assert await memberships.find("front", "10.200.0.9") == ("front", "back")
    assert engine.reads == 2
