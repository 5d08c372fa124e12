"""The queue of news to piggy-back (memberlist queue.go).

Each item is sent a bounded number of times; the least-sent items go first (the newest among
equals), and newer news about the same subject (a member, a table key) replaces older news.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from netoverlay.gossip.codec import news_size
from netoverlay.gossip.model import News, news_subject


@dataclass(slots=True)
class _Item:
    news: News
    size: int
    order: int
    transmits: int = 0


class BroadcastQueue:
    def __init__(self) -> None:
        self._items: dict[tuple[str, ...], _Item] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._items)

    def push(self, news: News) -> None:
        self._items[news_subject(news)] = _Item(news, news_size(news), next(self._order))

    def take(self, budget: int, limit: int) -> tuple[News, ...]:
        """News that fits in `budget` bytes, each counted as sent once more; items sent
        `limit` times leave the queue."""
        if not self._items:
            return ()
        chosen: list[News] = []
        ranked = sorted(self._items.items(), key=lambda kv: (kv[1].transmits, -kv[1].order))
        for subject, item in ranked:
            if item.size > budget:
                continue
            budget -= item.size
            chosen.append(item.news)
            item.transmits += 1
            if item.transmits >= limit:
                del self._items[subject]
            if budget < 16:
                break
        return tuple(chosen)
