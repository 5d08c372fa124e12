"""The IPsec plan of encrypted overlay networks: both ends of a pair derive the same
association without talking, each direction and epoch its own; only encrypted networks get
policies and marks; a rotation accepts the new epoch before sending with it and keeps the
old one until every node has moved; the steps add before they remove."""

from __future__ import annotations

import dataclasses

from netoverlay.overlay.ipsec import (
    OVERLAP,
    AddPolicy,
    AddState,
    DeletePolicy,
    DeleteState,
    IpsecPlan,
    ipsec_rules,
    ipsec_steps,
    mark,
    pair_key,
    plan_ipsec,
    vni_of,
)
from netoverlay.overlay.ruleset import render_ruleset
from netoverlay.overlay.types import ESP_OVERHEAD, NodeOverlay, OverlayNetwork

KEY = bytes(range(32))
NODES = ("10.9.0.1", "10.9.0.2", "10.9.0.3")
SECRET = OverlayNetwork(
    "secret", 4096, "10.200.0.0/20", "10.200.0.0/21", encrypted=True, network_id="id1"
)
PLAIN = OverlayNetwork("plain", 4097, "10.200.16.0/20", "10.200.16.0/21")


def overlay(local: str, *networks: OverlayNetwork, peers=NODES) -> NodeOverlay:
    return NodeOverlay(local, tuple(peers), networks or (SECRET, PLAIN))


def outbound(plan: IpsecPlan, local: str) -> dict[str, tuple[int, bytes]]:
    return {s.dst: (s.spi, s.key) for s in plan.states if s.src == local}


def inbound(plan: IpsecPlan, local: str) -> dict[str, set[tuple[int, bytes]]]:
    found: dict[str, set[tuple[int, bytes]]] = {}
    for s in plan.states:
        if s.dst == local:
            found.setdefault(s.src, set()).add((s.spi, s.key))
    return found


def test_both_ends_of_every_pair_derive_the_same_associations():
    plans = {node: plan_ipsec(overlay(node), KEY, 0.0) for node in NODES}
    for a in NODES:
        for b in NODES:
            if a != b:
                assert inbound(plans[b], b)[a] == {outbound(plans[a], a)[b]}, f"{a} -> {b}"
    keys = [s.key for plan in plans.values() for s in plan.states]
    assert len(set(keys)) == len(NODES) * (len(NODES) - 1), "one key per direction of each pair"
    assert all(len(key) == 36 for key in keys), "AES-256 and the 4-byte rfc4106 salt"


def test_keys_depend_on_the_secret_the_network_its_epoch_and_the_direction():
    base = pair_key(KEY, "id1", 4096, 0, "10.9.0.1", "10.9.0.2")
    assert pair_key(KEY, "id1", 4096, 0, "10.9.0.1", "10.9.0.2") == base
    for other in (
        pair_key(bytes(32), "id1", 4096, 0, "10.9.0.1", "10.9.0.2"),
        pair_key(KEY, "id2", 4096, 0, "10.9.0.1", "10.9.0.2"),  # the name made again
        pair_key(KEY, "id1", 4096, 1, "10.9.0.1", "10.9.0.2"),
        pair_key(KEY, "id1", 4096, 0, "10.9.0.2", "10.9.0.1"),
    ):
        assert other[0] != base[0] and other[1] != base[1]


def test_spis_are_never_reserved_and_two_epochs_never_share_one():
    for epoch in range(600):
        spi, _ = pair_key(KEY, "id1", 4096, epoch, "10.9.0.1", "10.9.0.2")
        assert spi >= 256 and spi & 0xFF == epoch & 0xFF


def test_only_encrypted_networks_get_policies_marks_and_rules():
    plan = plan_ipsec(overlay("10.9.0.1"), KEY, 0.0)
    assert {(p.dst, p.mark, p.port) for p in plan.policies} == {
        ("10.9.0.2", mark(4096), 4789),
        ("10.9.0.3", mark(4096), 4789),
    }
    assert {s.reqid for s in plan.states} == {mark(4096)}
    assert vni_of(mark(4096)) == 4096 and vni_of(4096) is None
    assert plan_ipsec(overlay("10.9.0.1", PLAIN), KEY, 0.0) == IpsecPlan(frozenset(), frozenset())
    rules = "\n".join(ipsec_rules(overlay("10.9.0.1")))
    assert f"udp dport 4789 @th,96,24 4096 meta mark set {mark(4096):#x}" in rules
    assert "@th,96,24 { 4096 } meta secpath missing drop" in rules
    assert "4097" not in rules
    assert rules in render_ruleset(overlay("10.9.0.1"), "t")
    assert "ipsec" not in render_ruleset(overlay("10.9.0.1", PLAIN), "t")


def test_an_encrypted_network_leaves_room_for_esp():
    assert SECRET.mtu(1450) == 1450 - ESP_OVERHEAD and PLAIN.mtu(1450) == 1450


def test_a_node_that_leaves_takes_its_associations_and_policy_with_it():
    before = plan_ipsec(overlay("10.9.0.1"), KEY, 0.0)
    after = plan_ipsec(overlay("10.9.0.1", peers=NODES[:2]), KEY, 0.0)
    todo = ipsec_steps(after, {s.id for s in before.states}, before.policies)
    assert {type(s) for s in todo} == {DeletePolicy, DeleteState}
    assert {s.policy.dst for s in todo if isinstance(s, DeletePolicy)} == {"10.9.0.3"}
    assert {(s.src, s.dst) for s in todo if isinstance(s, DeleteState)} == {
        ("10.9.0.1", "10.9.0.3"),
        ("10.9.0.3", "10.9.0.1"),
    }
    everything = ipsec_steps(
        IpsecPlan(frozenset(), frozenset()), {s.id for s in before.states}, before.policies
    )
    assert len(everything) == len(before.states) + len(before.policies), (
        "a removed network: nothing left"
    )


def test_steps_add_policies_then_associations_before_removing_anything():
    plan = plan_ipsec(overlay("10.9.0.1"), KEY, 0.0)
    stale = ("10.9.0.1", "10.9.0.9", 4242)
    todo = ipsec_steps(plan, {stale}, set())
    kinds = [type(s) for s in todo]
    assert kinds == sorted(kinds, key=[AddPolicy, AddState, DeletePolicy, DeleteState].index)
    assert todo[-1] == DeleteState(*stale)
    assert ipsec_steps(plan, {s.id for s in plan.states}, plan.policies) == [], (
        "in step: nothing to do"
    )


def rotated(at: float) -> OverlayNetwork:
    return dataclasses.replace(SECRET, key_epoch=1, key_rotated_at=at)


def test_a_rotation_accepts_the_new_epoch_before_sending_with_it_and_keeps_the_old_one_a_while():
    a, b = "10.9.0.1", "10.9.0.2"
    old = plan_ipsec(overlay(a, SECRET), KEY, 0.0)
    at = 1000.0
    phases = [
        plan_ipsec(overlay(a, rotated(at)), KEY, now)
        for now in (at, at + OVERLAP, at + 2 * OVERLAP)
    ]
    new_out = pair_key(KEY, "id1", 4096, 1, a, b)
    new_in = pair_key(KEY, "id1", 4096, 1, b, a)
    old_in = pair_key(KEY, "id1", 4096, 0, b, a)
    # 1: both epochs accepted, the old one still sent with.
    assert outbound(phases[0], a)[b] == outbound(old, a)[b]
    assert inbound(phases[0], a)[b] == {old_in, new_in}
    assert phases[0].next_change == at + OVERLAP
    # 2: the new one sent with, both still accepted (a node a little behind still sends the old).
    assert outbound(phases[1], a)[b] == new_out
    assert inbound(phases[1], a)[b] == {old_in, new_in}
    assert phases[1].next_change == at + 2 * OVERLAP
    # 3: the old epoch is gone.
    assert inbound(phases[2], a)[b] == {new_in} and phases[2].next_change is None
    # Every phase adds what it needs before it removes what it no longer does.
    for have, want in zip([old, *phases], phases, strict=False):
        todo = ipsec_steps(want, {s.id for s in have.states}, have.policies)
        adds = [i for i, s in enumerate(todo) if isinstance(s, AddState)]
        removes = [i for i, s in enumerate(todo) if isinstance(s, DeleteState)]
        assert not adds or not removes or max(adds) < min(removes)


def test_nodes_a_little_apart_on_a_rotation_always_have_what_the_other_sends():
    """b sees the rotation `lag` after a, and its clock is `skew` off a's: while both are
    under OVERLAP, each always accepts what the other sends."""
    a, b = "10.9.0.1", "10.9.0.2"
    at = 1000.0
    for lag in (0.0, OVERLAP - 0.5):
        for skew in (-OVERLAP + 0.5, 0.0, OVERLAP - 0.5):
            for now in [at + step * 0.25 for step in range(-4, int(12 * OVERLAP))]:
                seen_by_b = rotated(at) if now >= at + lag else SECRET
                plan_a = plan_ipsec(overlay(a, rotated(at)), KEY, now)
                plan_b = plan_ipsec(overlay(b, seen_by_b), KEY, now + skew)
                assert outbound(plan_a, a)[b] in inbound(plan_b, b)[a], ("a->b", lag, skew, now)
                assert outbound(plan_b, b)[a] in inbound(plan_a, a)[b], ("b->a", lag, skew, now)
