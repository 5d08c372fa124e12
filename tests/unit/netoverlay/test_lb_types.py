"""Input values, the PROXY v2 header and the statistics rates."""

from __future__ import annotations

import pytest

from consensus.wire import WireError, from_plain
from netoverlay.lb.proxy_protocol import SIGNATURE, proxy_header, proxy_v2_header
from netoverlay.lb.stats import ServiceCounters
from netoverlay.lb.types import Backend, ServicePort, endpoints_for, routed_ports


def test_proxy_v2_header_ipv4_layout():
    header = proxy_v2_header(("192.0.2.7", 51000), ("10.0.0.1", 80))
    assert header == (
        SIGNATURE
        + bytes([0x21, 0x11, 0, 12])
        + bytes([192, 0, 2, 7, 10, 0, 0, 1])
        + (51000).to_bytes(2, "big")
        + (80).to_bytes(2, "big")
    )


def test_proxy_v2_header_ipv6_and_mapped_ipv4():
    header = proxy_v2_header(("2001:db8::1", 1, 0, 0), ("2001:db8::2", 2, 0, 0))
    assert header[12:16] == bytes([0x21, 0x21, 0, 36]) and len(header) == 16 + 36
    mapped = proxy_v2_header(("::ffff:192.0.2.7", 5), ("10.0.0.1", 80))
    assert mapped[13] == 0x11 and mapped[16:20] == bytes([192, 0, 2, 7])


def test_proxy_v1_header_is_one_text_line():
    assert proxy_header("v1", ("192.0.2.7", 51000), ("10.0.0.1", 80)) == (
        b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 80\r\n"
    )
    assert proxy_header("v1", ("2001:db8::1", 1, 0, 0), ("2001:db8::2", 2, 0, 0)) == (
        b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"
    )
    assert proxy_header("v2", ("192.0.2.7", 1), ("10.0.0.1", 2)).startswith(SIGNATURE)


def test_rates_between_two_snapshots():
    counters = ServiceCounters()
    before = counters.snapshot("web", 80, at=10.0)
    counters.connections_total += 50
    counters.bytes_in += 1000
    counters.bytes_out += 4000
    counters.connect_failures += 2
    rates = counters.snapshot("web", 80, at=12.0).rates_since(before)
    assert (
        rates.connections_per_second,
        rates.bytes_in_per_second,
        rates.bytes_out_per_second,
        rates.connect_failures_per_second,
    ) == (25, 500, 2000, 1)
    assert before.rates_since(before).connections_per_second == 0


def test_endpoints_arrive_from_plain_data_with_errors_naming_the_field():
    plain = {"service": "web", "task_id": "t1", "node_id": "n1", "address": "10.0.0.1", "port": 80}
    assert from_plain(Backend, plain) == Backend("web", "t1", "n1", "10.0.0.1", 80)
    with pytest.raises(WireError, match="port"):
        from_plain(Backend, {**plain, "port": "80"})
    with pytest.raises(WireError, match="weight: must be an integer >= 1"):
        from_plain(Backend, {**plain, "weight": -1})
    with pytest.raises(WireError, match="idle_timeout"):
        from_plain(
            ServicePort,
            {"service": "web", "published_port": 80, "target_port": 80, "idle_timeout": 0},
        )


def test_endpoints_match_the_target_port_they_serve():
    http = Backend("web", "t1", "n1", "10.0.0.1", 30080, target_port=80)
    https = Backend("web", "t1", "n1", "10.0.0.1", 30443, target_port=443)
    both = Backend("web", "t2", "n1", "10.0.0.2", 8000)
    table = {"web": [http, https, both]}
    assert endpoints_for(ServicePort("web", 80, 80), table) == [http, both]
    assert endpoints_for(ServicePort("web", 443, 443), table) == [https, both]


def test_only_ingress_ports_of_the_protocol_asked_are_routed():
    ports = [
        ServicePort("web", 80, 80),
        ServicePort("web", 81, 80, mode="host"),
        ServicePort("dns", 53, 53, protocol="udp"),
    ]
    assert list(routed_ports(ports)) == [80]
    assert list(routed_ports(ports, "udp")) == [53]
