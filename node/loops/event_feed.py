"""This node's cluster-event feed: after each commit it derives the events of the commands
applied since the last state it saw (node.loops.events) and fans them out to subscribers (the SSE
endpoint). Events are numbered by the commands that made them, the same on every node.

Each subscriber has a bounded queue: one that falls behind by more than its queue holds is
dropped (its stream ends with a note), so a slow client never holds the node up or makes it
buffer without bound. The last `history` events stay for `since=` replays.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from node.loops.events import Event, events_between
from scheduler.view import StateView

HISTORY = 1000
QUEUE_SIZE = 256


@dataclass(frozen=True, slots=True)
class Numbered:
    seq: int  # the event's number (the same on every node), for `since=` and Last-Event-ID
    event: Event


class Subscription:
    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[Numbered | None] = asyncio.Queue(size)
        self.dropped = False

    def offer(self, item: Numbered) -> bool:
        """Queue `item`; False (and the subscription is over) when the queue is full."""
        try:
            self._queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            self.dropped = True
            while not self._queue.empty():  # make room for the end-of-stream mark
                self._queue.get_nowait()
            self._queue.put_nowait(None)
            return False

    async def next(self) -> Numbered | None:
        """The next event, or None once this subscriber has been dropped."""
        return await self._queue.get()


class EventHub:
    def __init__(self, history: int = HISTORY, queue_size: int = QUEUE_SIZE) -> None:
        self._history: deque[Numbered] = deque(maxlen=history)
        self._subscribers: set[Subscription] = set()
        self._queue_size = queue_size

    def publish(self, events: list[Event]) -> None:
        """Publish events in the order of their `seq`, each higher than any published before."""
        for event in events:
            item = Numbered(event.seq, event)
            self._history.append(item)
            for sub in list(self._subscribers):
                if not sub.offer(item):
                    self._subscribers.discard(sub)

    def subscribe(self) -> Subscription:
        sub = Subscription(self._queue_size)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def since(self, seq: int) -> list[Numbered]:
        return [item for item in self._history if item.seq > seq]

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


class EventFeed:
    """The loop: woken by `changed` (set after every commit), it derives and publishes."""

    def __init__(
        self,
        read_state: Callable[[], StateView],
        changed: asyncio.Event,
        hub: EventHub | None = None,
    ) -> None:
        self._read_state = read_state
        self._changed = changed
        self.hub = hub or EventHub()

    async def run(self) -> None:
        seen = self._read_state()
        while True:
            await self._changed.wait()
            self._changed.clear()
            now = self._read_state()
            if (
                now.applied <= seen.applied
            ):  # nothing new (or a replica restored to an earlier state)
                seen = now
                continue
            # A diff of large states takes a while: keep it off the event loop.
            events = await asyncio.to_thread(events_between, seen, now)
            seen = now
            self.hub.publish(events)
