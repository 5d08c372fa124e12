"""The VXLAN plan of a node and the steps from what the kernel has: a device per network
flooding to every other live node, stale flooding entries removed, changed devices remade."""

from __future__ import annotations

import pytest

from netoverlay.overlay.plan import (
    AddFlood,
    CreateLink,
    DeleteLink,
    LinkState,
    RemoveFlood,
    overlay_mtu,
    plan_links,
    steps,
)
from netoverlay.overlay.types import NodeOverlay, OverlayNetwork

APP = OverlayNetwork(
    "appnet", 4096, "10.200.0.0/20", "10.200.0.0/21", "10.200.0.0/26", "10.200.0.1"
)
DB = OverlayNetwork(
    "dbnet", 4097, "10.200.16.0/20", "10.200.16.0/21", "10.200.16.0/26", "10.200.16.1"
)


def overlay(*peers: str, networks=(APP, DB)) -> NodeOverlay:
    return NodeOverlay("10.1.0.1", ("10.1.0.1", *peers), networks)


def state_of(plan, flood=None) -> LinkState:
    return LinkState(
        plan.vxlan,
        plan.vni,
        plan.local,
        plan.port,
        plan.bridge,
        plan.mtu,
        frozenset(plan.peers if flood is None else flood),
    )


def test_one_device_per_network_flooding_to_every_peer_but_itself():
    plans = plan_links(overlay("10.1.0.3", "10.1.0.2"), 1500)
    assert [(p.vxlan, p.bridge, p.vni, p.mtu) for p in plans] == [
        ("svx4096", "sov4096", 4096, 1450),
        ("svx4097", "sov4097", 4097, 1450),
    ]
    assert all(p.peers == ("10.1.0.2", "10.1.0.3") and p.local == "10.1.0.1" for p in plans)


def test_mtu_leaves_room_for_the_vxlan_header_and_refuses_a_tiny_underlay():
    assert overlay_mtu(9000) == 8950
    with pytest.raises(ValueError, match="mtu"):
        overlay_mtu(600)


def test_from_nothing_devices_are_created_then_flooding_entries_added():
    plans = plan_links(overlay("10.1.0.2"), 1500)
    assert steps(plans, {}) == [
        CreateLink(plans[0]),
        AddFlood("svx4096", "10.1.0.2"),
        CreateLink(plans[1]),
        AddFlood("svx4097", "10.1.0.2"),
    ]


def test_in_step_gives_nothing_to_do():
    plans = plan_links(overlay("10.1.0.2"), 1500)
    assert steps(plans, {p.vxlan: state_of(p) for p in plans}) == []


def test_a_node_that_left_loses_its_entries_and_a_new_one_gains_them():
    before = plan_links(overlay("10.1.0.2", "10.1.0.3"), 1500)
    after = plan_links(overlay("10.1.0.3", "10.1.0.4"), 1500)
    have = {p.vxlan: state_of(p) for p in before}
    assert steps(after, have) == [
        RemoveFlood("svx4096", "10.1.0.2"),
        AddFlood("svx4096", "10.1.0.4"),
        RemoveFlood("svx4097", "10.1.0.2"),
        AddFlood("svx4097", "10.1.0.4"),
    ]


def test_removed_networks_and_changed_devices_are_deleted_first():
    plans = plan_links(overlay("10.1.0.2", networks=(APP,)), 1500)
    moved = plan_links(NodeOverlay("10.1.0.9", ("10.1.0.2",), (APP,)), 1500)
    have = {"svx4096": state_of(moved[0]), "svx4097": state_of(plan_links(overlay(), 1500)[1])}
    assert steps(plans, have) == [
        DeleteLink("svx4096"),
        DeleteLink("svx4097"),
        CreateLink(plans[0]),
        AddFlood("svx4096", "10.1.0.2"),
    ]
