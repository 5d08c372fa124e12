"""This process's share of the feed, for the metrics (node.telemetry)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class FeedCounts:
    """On a voter: the members' streams it serves now, the snapshots it sent them, and the
    streams it dropped because their member did not keep up. On a member: the snapshots it
    restored (a member that resumed from its index needed none)."""

    streams: int = 0
    snapshots_sent: int = 0
    dropped_slow: int = 0
    snapshots_restored: int = 0


FEED_COUNTS = FeedCounts()
