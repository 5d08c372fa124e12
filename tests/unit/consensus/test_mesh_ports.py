"""Compose target-only ports get mesh ports as Swarm gives them: the lowest free one from
30000, the service's own again on a re-apply, never one another service holds."""

from __future__ import annotations

import pytest

from consensus.mesh_ports import MESH_PORTS, assign_mesh_ports, published_ingress
from consensus.services import parse_service_spec


def spec(name: str, *ports):
    return parse_service_spec({"name": name, "image": "img", "ports": list(ports)})


def test_the_lowest_free_port_and_only_for_the_ports_asked():
    taken = {(30000, "tcp")}
    web = assign_mesh_ports(spec("web", "80", "8080:81", "9000"), {(80, "tcp")}, None, taken)
    assert [(p.target, p.published) for p in web.ports] == [(80, 30001), (81, 8080), (9000, 0)]
    assert (30001, "tcp") in taken


def test_a_reapply_keeps_the_number_the_service_has():
    first = assign_mesh_ports(spec("web", "80"), {(80, "tcp")}, None, {(30000, "tcp")})
    again = assign_mesh_ports(spec("web", "80"), {(80, "tcp")}, first, set())
    assert again == first


def test_udp_and_tcp_are_apart_and_a_full_range_is_an_error():
    taken = {(n, "tcp") for n in MESH_PORTS}
    dns = assign_mesh_ports(spec("dns", "53/udp"), {(53, "udp")}, None, taken)
    assert dns.ports[0].published == 30000
    with pytest.raises(ValueError, match="ports: every mesh port"):
        assign_mesh_ports(spec("web", "80"), {(80, "tcp")}, None, taken)


def test_published_ingress_leaves_host_and_internal_ports_out():
    specs = [spec("a", "8080:80", {"target": 9, "published": 9000, "mode": "host"}, "81")]
    assert published_ingress(specs) == {(8080, "tcp")}
