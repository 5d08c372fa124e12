"""Rendering the nftables table and choosing a data plane: pure, no nft needed."""

from __future__ import annotations

import re

import pytest

from netoverlay.lb.dataplane import choose_dataplane, needs_proxy
from netoverlay.lb.nft import NftConfig, render_table
from netoverlay.lb.types import Backend, ServicePort

CONFIG = NftConfig(host="10.0.0.1", table="shoal")


def ep(n: int, weight: int = 1, service: str = "web", address: str | None = None) -> Backend:
    return Backend(service, f"t{n}", "n1", address or f"10.1.0.{n}", 8000 + n, weight)


def test_each_published_port_jumps_from_both_nat_hooks_to_its_own_chain():
    text = render_table(
        CONFIG,
        [ServicePort("web", 80, 8080), ServicePort("api", 81, 9090)],
        {"web": [ep(1)], "api": [ep(2, service="api")]},
    )
    for port in (80, 81):
        jump = f"ip daddr 10.0.0.1 tcp dport {port} jump svc_{port}"
        assert text.count(jump) == 2  # prerouting (other hosts) and output (this host)
        assert f"chain svc_{port} {{" in text
    assert "hook prerouting" in text and "hook output" in text and "masquerade" in text


def test_weights_become_ranges_of_the_random_number():
    text = render_table(CONFIG, [ServicePort("web", 80, 8080)], {"web": [ep(1, 3), ep(2, 1)]})
    assert re.search(
        r"numgen random mod 4 map \{ 0-2 : 10\.1\.0\.1 \. 8001, 3 : 10\.1\.0\.2 \. 8002 \}", text
    )


def test_rendering_is_deterministic_and_the_replacement_is_one_transaction():
    ports = [ServicePort("web", 80, 8080)]
    one = render_table(CONFIG, ports, {"web": [ep(1), ep(2)]})
    other = render_table(CONFIG, ports, {"web": [ep(2), ep(1)]})
    assert one == other
    lines = one.splitlines()
    assert lines[:3] == ["table ip shoal {}", "delete table ip shoal", "table ip shoal {"]


def test_host_mode_and_ipv6_endpoints_are_left_out():
    ports = [ServicePort("web", 80, 8080), ServicePort("h", 82, 80, mode="host")]
    text = render_table(CONFIG, ports, {"web": [ep(1), ep(2, address="fd00::2")]})
    assert "svc_82" not in text
    assert "fd00" not in text and "map { 0 : 10.1.0.1 . 8001 }" in text


def test_a_udp_port_is_translated_to_the_udp_endpoints_only():
    ports = [ServicePort("dns", 53, 53), ServicePort("dns", 53, 53, protocol="udp")]
    tcp = Backend("dns", "t1", "n1", "10.1.0.1", 8001)
    udp = Backend("dns", "t1", "n1", "10.1.0.1", 8002, protocol="udp")
    text = render_table(CONFIG, ports, {"dns": [tcp, udp]})
    assert "ip daddr 10.0.0.1 udp dport 53 jump svc_53_udp" in text
    assert "chain svc_53 {\n\t\tmeta l4proto tcp dnat ip to numgen random mod 1 map" in text
    assert "chain svc_53_udp {\n\t\tmeta l4proto udp dnat ip to numgen random mod 1 map" in text
    assert "{ 0 : 10.1.0.1 . 8002 }" in text.split("svc_53_udp {")[1]


def test_a_port_without_endpoints_gets_no_translation():
    text = render_table(CONFIG, [ServicePort("web", 80, 8080)], {})
    assert "chain svc_80 {\n\t}" in text and "dnat ip to" not in text


def test_config_rejects_what_would_break_the_script():
    with pytest.raises(ValueError, match="^table:"):
        NftConfig(table='x"; flush ruleset')
    with pytest.raises(ValueError, match="^host:"):
        NftConfig(host="::1")


@pytest.mark.parametrize(
    "mode, problem, chosen",
    [
        ("auto", None, "nft"),
        ("auto", "nftables needs root", "proxy"),
        ("nft", None, "nft"),
        ("proxy", None, "proxy"),
        ("proxy", "no nft", "proxy"),
    ],
)
def test_choose_dataplane(mode, problem, chosen):
    assert choose_dataplane(mode, problem) == chosen


def test_asking_for_nft_where_it_cannot_work_says_why():
    with pytest.raises(ValueError, match="lb-dataplane: nft was asked for but nftables needs root"):
        choose_dataplane("nft", "nftables needs root")
    with pytest.raises(ValueError, match="lb-dataplane: must be"):
        choose_dataplane("ipvs", None)  # type: ignore[arg-type]


def test_ports_needing_userspace_features_stay_on_the_proxy():
    assert needs_proxy(ServicePort("web", 80, 80, proxy_protocol="v2"))
    assert needs_proxy(ServicePort("web", 80, 80, idle_timeout=30))
    assert not needs_proxy(ServicePort("web", 80, 80))
