"""A member's choice of voter, and its fallback when the voters are of a release before the
feed (they answer its route with 404): it stops following and asks for a Raft replica."""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import web

from node.client import ShoalClient
from node.feed.member import FeedMember, next_voter, voter_order

VOTERS = ["10.0.0.1:7420", "10.0.0.2:7420", "10.0.0.3:7420"]


def test_members_spread_over_the_voters_and_a_lost_voter_moves_only_its_own():
    members = [f"node-{i}" for i in range(600)]
    first = {m: voter_order(m, VOTERS)[0] for m in members}
    assert all(150 <= n <= 250 for n in Counter(first.values()).values()), Counter(first.values())
    assert voter_order("node-1", VOTERS) == voter_order("node-1", list(reversed(VOTERS)))
    without = {m: voter_order(m, VOTERS[:2])[0] for m in members}
    moved = {m for m in members if without[m] != first[m]}
    assert moved == {m for m in members if first[m] == VOTERS[2]}


def test_a_member_moves_on_past_the_voter_that_failed_and_past_the_leader():
    order = ["a", "b", "c"]
    assert next_voter(order, None, None) == "a"
    assert next_voter(order, "a", None) == "b"
    assert next_voter(order, "c", None) == "a", "after the last comes the first again"
    assert next_voter(order, None, "a") == "b", "the leader refuses the feed: not asked"
    assert next_voter(order, "c", "a") == "b"
    assert next_voter(order, "b", "c") == "a"
    assert next_voter(["a"], None, "a") == "a", "the one voter leads and serves the feed"
    assert next_voter(order, "gone", "zzz") == "a", "a voter no longer in the order"
    # Once the others failed in a row, the leader known is asked too: it may lead no longer.
    assert next_voter(order, "c", "a", failures=1) == "b"
    assert next_voter(order, "c", "a", failures=2) == "a"


async def test_a_member_of_voters_without_the_feed_falls_back_to_a_replica():
    app = web.Application()  # an older release: no feed route, so every path is a 404
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = ShoalClient(f"http://127.0.0.1:{port}")
    fell_back = asyncio.Event()
    member = FeedMember(
        ["127.0.0.1:7421"],
        lambda: None,
        node_id="n2",
        remembered_apis=lambda: [f"http://127.0.0.1:{port}"],
        client_at=lambda api: client,
        unsupported=fell_back.set,
    )
    try:
        await asyncio.wait_for(fell_back.wait(), 5)
        await asyncio.sleep(0.2)
        assert fell_back.is_set() and not member.progress().caught_up
        assert member.status().connected_partners == ()
    finally:
        member.stop()
        await client.close()
        await runner.cleanup()
