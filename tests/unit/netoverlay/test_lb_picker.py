"""The power-of-two-choices picker: exclusion, removal, weights, least connections."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netoverlay.lb.picker import QUARANTINE_SECONDS, Picker
from netoverlay.lb.types import Endpoint


def endpoint(n: int, weight: int = 1) -> Endpoint:
    return Endpoint("web", f"t{n}", "node-1", f"10.0.0.{n}", 8000 + n, weight)


endpoint_sets = st.lists(
    st.builds(endpoint, st.integers(1, 40), st.integers(1, 5)),
    min_size=1,
    max_size=12,
    unique_by=lambda e: e.key,
)


@given(endpoint_sets, st.data(), st.integers(0, 2**32))
def test_never_picks_an_excluded_endpoint(endpoints, data, seed):
    excluded = data.draw(st.sets(st.sampled_from([e.key for e in endpoints])))
    picker = Picker(endpoints)
    rng = random.Random(seed)
    for _ in range(20):
        chosen = picker.pick(rng, 0.0, excluded)
        if len(excluded) == len(endpoints):
            assert chosen is None
        else:
            assert chosen is not None and chosen.key not in excluded


@given(endpoint_sets, st.data(), st.integers(0, 2**32))
def test_never_picks_a_removed_endpoint(endpoints, data, seed):
    kept = data.draw(st.lists(st.sampled_from(endpoints), unique_by=lambda e: e.key))
    picker = Picker(endpoints)
    rng = random.Random(seed)
    for e in endpoints:
        picker.opened(e)
    picker.replace(kept)
    for _ in range(20):
        chosen = picker.pick(rng, 0.0)
        assert (chosen is None) == (not kept)
        assert chosen is None or chosen in kept


@given(
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(0, 30),
    st.integers(0, 30),
    st.integers(0, 2**32),
)
def test_of_two_endpoints_the_one_with_fewer_connections_per_weight_wins(
    weight_a, weight_b, open_a, open_b, seed
):
    a, b = endpoint(1, weight_a), endpoint(2, weight_b)
    picker = Picker([a, b])
    for e, n in ((a, open_a), (b, open_b)):
        for _ in range(n):
            picker.opened(e)
    chosen = picker.pick(random.Random(seed), 0.0)
    load_a, load_b = open_a / weight_a, open_b / weight_b
    if load_a != load_b:
        assert chosen == (a if load_a < load_b else b)


def test_connections_spread_evenly_when_they_stay_open():
    endpoints = [endpoint(n) for n in range(1, 6)]
    picker = Picker(endpoints)
    rng = random.Random(7)
    for _ in range(500):
        picker.opened(picker.pick(rng, 0.0))
    counts = [picker.active(e.key) for e in endpoints]
    # Power of two choices keeps the gap between the most and least loaded tiny.
    assert sum(counts) == 500 and max(counts) - min(counts) <= 2


def test_short_connections_follow_the_weights():
    heavy, light = endpoint(1, weight=3), endpoint(2, weight=1)
    picker = Picker([heavy, light])
    rng = random.Random(3)
    picks = Counter(picker.pick(rng, 0.0).key for _ in range(4000))
    # With no open connections every draw ties and the first (weight-proportional) draw wins.
    assert 0.70 < picks[heavy.key] / 4000 < 0.80


def test_weights_hold_under_load():
    heavy, light = endpoint(1, weight=3), endpoint(2, weight=1)
    picker = Picker([heavy, light])
    rng = random.Random(5)
    for _ in range(400):
        picker.opened(picker.pick(rng, 0.0))
    assert picker.active(heavy.key) == pytest.approx(300, abs=3)


def test_draining_counts_survive_removal_until_closed():
    a, b = endpoint(1), endpoint(2)
    picker = Picker([a, b])
    picker.opened(a)
    picker.replace([b])
    assert picker.active(a.key) == 1
    picker.closed(a)
    assert picker.active(a.key) == 0
    # Coming back, it starts from zero rather than inheriting stale counts.
    picker.replace([a, b])
    assert picker.active(a.key) == 0


def test_a_failed_endpoint_is_skipped_until_its_quarantine_ends():
    a, b = endpoint(1), endpoint(2)
    picker = Picker([a, b])
    rng = random.Random(1)
    picker.failed(a, now=100.0)
    assert {picker.pick(rng, 100.5).key for _ in range(50)} == {b.key}
    assert a.key in {picker.pick(rng, 100.0 + QUARANTINE_SECONDS).key for _ in range(50)}


def test_quarantined_endpoints_are_still_used_when_nothing_else_is_left():
    a, b = endpoint(1), endpoint(2)
    picker = Picker([a, b])
    picker.failed(a, now=0.0)
    picker.failed(b, now=0.0)
    assert picker.pick(random.Random(1), 0.1) in (a, b)
    assert picker.pick(random.Random(1), 0.1, exclude={a.key}) == b


def test_a_success_lifts_the_quarantine():
    a, b = endpoint(1), endpoint(2)
    picker = Picker([a, b])
    picker.failed(a, now=0.0)
    picker.succeeded(a)
    assert a.key in {picker.pick(random.Random(n), 0.1).key for n in range(50)}


def test_the_same_seed_replays_the_same_choices():
    endpoints = [endpoint(n) for n in range(1, 9)]
    first, second = Picker(endpoints), Picker(endpoints)
    rng1, rng2 = random.Random(42), random.Random(42)
    assert [first.pick(rng1, 0.0) for _ in range(50)] == [second.pick(rng2, 0.0) for _ in range(50)]


def test_no_endpoints_means_no_pick():
    assert Picker().pick(random.Random(1), 0.0) is None


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("weight", {"weight": 0}),
        ("port", {"port": 70000}),
        ("address", {"address": "not-an-ip"}),
        ("task_id", {"task_id": ""}),
    ],
)
def test_bad_endpoints_are_rejected_naming_the_field(field, kwargs):
    values = dict(service="web", task_id="t1", node_id="n1", address="10.0.0.1", port=80)
    with pytest.raises(ValueError, match=f"^{field}:"):
        Endpoint(**{**values, **kwargs})
