"""bench.per_commit at a small size: it applies real commits to a member's copy and runs each
per-commit consumer on them. Nothing here is asserted on time."""

from __future__ import annotations

from bench.per_commit import measure


async def test_every_consumer_is_measured_on_every_commit():
    row = await measure(nodes=10, tasks=100, n_services=10, commits=5)
    assert row["tasks"] == 100
    assert set(row["per_commit_us"]) == {
        "feed_apply",
        "agent",
        "mesh_announce",
        "mesh_routes",
        "overlay",
        "events",
    }
