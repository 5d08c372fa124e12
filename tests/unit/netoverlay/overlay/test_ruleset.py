"""The overlay's nftables ruleset: DNAT from each VIP to its healthy tasks (only from its own
network), masquerade of translated connections, isolation between networks, refusal of VIPs
without tasks. `nft --check` (where nft is installed) proves the kernel would take it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from netoverlay.overlay.ruleset import render_ruleset
from netoverlay.overlay.types import NodeOverlay, OverlayNetwork, ServiceOnNetwork, VipPort

APP = OverlayNetwork(
    "appnet",
    4096,
    "10.200.0.0/20",
    "10.200.0.0/21",
    "10.200.0.0/26",
    "10.200.0.1",
    services=(
        ServiceOnNetwork("backend", "10.200.8.1", (), ("10.200.0.66", "10.200.0.2")),
        ServiceOnNetwork(
            "frontend",
            "10.200.8.2",
            (),
            ("10.200.0.3",),
            (VipPort(80, 8080), VipPort(53, 5353, "udp"), VipPort(443, 443)),
        ),
        ServiceOnNetwork("idle", "10.200.8.3"),
    ),
)
OTHER = OverlayNetwork(
    "other",
    4097,
    "10.200.16.0/20",
    "10.200.16.0/21",
    "10.200.16.0/26",
    "10.200.16.1",
    services=(ServiceOnNetwork("backend", "10.200.24.1", (), ("10.200.16.2",)),),
)


def render(*networks) -> str:
    return render_ruleset(NodeOverlay("10.1.0.1", (), networks), "shoal_overlay_n1")


def test_a_vip_is_translated_to_its_tasks_only_when_it_comes_from_its_network():
    script = render(APP)
    assert 'iifname "sov4096" ip daddr 10.200.8.1 jump vip_4096_0' in script
    assert "ip daddr 10.200.8.1 jump vip_4096_0" in script.split("chain output")[1]
    assert "dnat to numgen random mod 2 map { 0 : 10.200.0.2, 1 : 10.200.0.66 }" in script
    assert "dnat to 10.200.0.3" in script


def test_a_vip_maps_its_service_ports_to_the_tasks_target_ports_and_keeps_the_others():
    chain = render(APP).split("chain vip_4096_1 {")[1].split("}")[0].strip().splitlines()
    assert [line.strip() for line in chain] == [
        "tcp dport 80 dnat to 10.200.0.3 : 8080",
        "udp dport 53 dnat to 10.200.0.3 : 5353",
        "dnat to 10.200.0.3",
    ]
    backend = render(APP).split("chain vip_4096_0 {")[1].split("}")[0]
    assert "dport" not in backend


def test_a_vip_without_healthy_tasks_is_refused_not_translated():
    script = render(APP)
    assert "10.200.8.3" not in script
    assert "ip daddr { 10.200.8.0/21 } reject" in script


def test_translated_connections_are_masqueraded_on_their_network():
    assert 'ct status dnat oifname "sov4096" ip daddr 10.200.0.0/21 masquerade' in render(APP)


def test_networks_are_isolated_from_each_other():
    script = render(APP, OTHER)
    assert 'iifname . oifname { "sov4096" . "sov4097", "sov4097" . "sov4096" } drop' in script
    assert "iifname . oifname" not in render(APP), "one network has nothing to be isolated from"


def test_no_connection_from_outside_a_network_is_let_in_but_the_routing_meshs():
    script = render(APP)
    accept = script.index('oifname "sov4096" iifname != "sov4096" ct status dnat accept')
    assert accept < script.index('oifname "sov4096" iifname != "sov4096" ct state new drop')


def test_an_internal_network_has_no_way_out():
    internal = OverlayNetwork(
        "vault",
        4098,
        "10.200.32.0/20",
        "10.200.32.0/21",
        "10.200.32.0/26",
        "10.200.32.1",
        internal=True,
    )
    script = render(APP, internal)
    assert 'iifname "sov4098" oifname != "sov4098" drop' in script
    assert 'iifname "sov4096" oifname != "sov4096"' not in script


def test_rendering_is_deterministic_and_starts_by_replacing_the_table():
    script = render(APP, OTHER)
    assert script == render(OTHER, APP)
    assert script.startswith("table ip shoal_overlay_n1 {}\ndelete table ip shoal_overlay_n1\n")


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
def test_nft_accepts_the_ruleset():
    internal = OverlayNetwork(
        "vault",
        4098,
        "10.200.32.0/20",
        "10.200.32.0/21",
        "10.200.32.0/26",
        "10.200.32.1",
        internal=True,
    )
    done = subprocess.run(
        ["nft", "--check", "-f", "-"],
        input=render(APP, OTHER, internal),
        text=True,
        capture_output=True,
    )
    if "Operation not permitted" in done.stderr:
        pytest.skip("nft --check needs CAP_NET_ADMIN here")
    assert done.returncode == 0, done.stderr
