"""Kubernetes Services on the overlay: every workload of a file joins one network, a ClusterIP
Service is its workload's name there and a VIP port in front of its targetPort (any number of
Services on the same port), a headless one gives no VIP, and a Service kept without its
workload brings its name and network along whenever its workload comes."""

from __future__ import annotations

import pytest

import consensus  # noqa: F401
from consensus.model import Node
from consensus.networks import networks
from consensus.nodes import RegisterNode
from consensus.selectors import port_selectors
from consensus.services import NetworkAttachment, PortSpec, parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import CreateService, services
from netoverlay.overlay.types import VipPort
from node.manifests import ManifestError, load_manifest
from node.manifests.kube import NETWORK
from node.overlay.view import node_overlay
from tests.unit.node.test_apply_plan import apply


def deployment(name: str, port: int = 8080) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: main, image: img, ports: [{{containerPort: {port}}}]}}]}}
---
"""


def service(name: str, app: str, port: int = 80, target: int = 8080, extra: str = "") -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {app}}}
  ports: [{{port: {port}, targetPort: {target}}}]
{extra}---
"""


TWO = (
    deployment("one-app")
    + deployment("two-app", 9090)
    + service("one", "one-app")
    + service("two", "two-app", 80, 9090)
)


def test_clusterip_services_on_one_port_are_names_and_vip_ports_on_the_files_network():
    manifest = load_manifest(TWO)
    assert manifest.networks == (NETWORK,) and NETWORK.name == "default"
    one, two = manifest.specs
    assert one.networks == (NetworkAttachment("default", ("one",)),)
    assert two.networks == (NetworkAttachment("default", ("two",)),)
    assert one.ports == (PortSpec(8080, vip_port=80),) and two.ports == (
        PortSpec(9090, vip_port=80),
    )
    assert not manifest.warnings
    twins = deployment("one-app") + deployment("two-app").replace(
        "labels: {app: two-app}", "labels: {app: one-app}"
    )
    both = load_manifest(twins + service("one", "one-app"))
    assert both.warnings == (
        "Service/one: selects 2 workloads: each gets its ports, and its name answers "
        "one of them only (the first by name)",
    )


def test_both_apply_with_a_vip_each_and_every_node_maps_port_80_to_their_target():
    state = ClusterState()
    assert apply(state, TWO)["one-app"] == "create"
    vips = networks(state)["default"].vips
    assert set(vips) == {"one-app", "two-app"} and vips["one-app"] != vips["two-app"]
    assert state.apply(RegisterNode(Node("n0", "node0", "10.1.0.1", 7420, 7421, 7422))).ok
    (net,) = node_overlay(state, "n0", "10.1.0.1", [], [], 4789).networks
    by_name = {s.name: s for s in net.services}
    assert by_name["one-app"].aliases == ("one",) and by_name["one-app"].ports == (
        VipPort(80, 8080, "tcp"),
    )
    assert by_name["two-app"].aliases == ("two",) and by_name["two-app"].ports == (
        VipPort(80, 9090, "tcp"),
    )


def test_a_service_named_as_its_workload_adds_no_alias_and_a_headless_one_gives_no_vip():
    headless = deployment("db", 5432) + service("db", "db", 5432, 5432, "  clusterIP: None\n")
    (spec,) = load_manifest(headless).specs
    assert spec.networks == (NetworkAttachment("default"),)
    assert spec.endpoint_mode == "dnsrr" and spec.ports == (PortSpec(5432),)
    state = ClusterState()
    apply(state, headless)
    assert networks(state)["default"].vips == {}


def test_a_fixed_cluster_ip_is_a_warning_and_a_service_name_and_port_are_checked():
    manifest = load_manifest(
        deployment("web") + service("web", "web", extra="  clusterIP: 10.96.0.10\n")
    )
    assert manifest.warnings == (
        (
            "Service/web.spec.clusterIP: the cluster gives the Service's VIP from "
            "its network's range"
        ),
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(deployment("web") + service("Web.Front", "web"))
    assert caught.value.field == "Service/Web.Front.metadata.name"
    for bad in ("70000", "http"):
        with pytest.raises(ManifestError) as caught:
            load_manifest(
                deployment("web") + service("web", "web").replace("port: 80,", f"port: {bad},")
            )
        assert caught.value.field == "Service/web.spec.ports[0].port"


@pytest.mark.parametrize("order", ["service first", "service after"])
def test_a_service_in_its_own_file_brings_its_name_network_and_vip_port(order):
    state = ClusterState()
    files = [service("front", "web-app"), deployment("web-app")]
    if order == "service after":
        files.reverse()
    for text in files:
        apply(state, text)
    spec = services(state)["web-app"].spec
    assert spec.networks == (NetworkAttachment("default", ("front",)),)
    assert spec.ports == (PortSpec(8080, vip_port=80),)
    assert port_selectors(state)["front"].network == "default"
    assert "web-app" in networks(state)["default"].vips
    apply(state, deployment("web-app"))  # applying the workload's file again keeps them
    assert services(state)["web-app"].spec.networks == (NetworkAttachment("default", ("front",)),)
    apply(state, service("back", "web-app", 81))  # a second Service, on another port of the VIP
    spec = services(state)["web-app"].spec
    assert spec.networks == (NetworkAttachment("default", ("front", "back")),)
    assert spec.ports == (PortSpec(8080, vip_port=80), PortSpec(8080, vip_port=81))


def test_a_kept_headless_service_turns_a_service_without_a_network_to_dnsrr_on_it():
    state = ClusterState()
    plain = parse_service_spec({"name": "cache", "image": "img", "labels": {"app": "cache"}})
    assert state.apply(CreateService("s1", plain, 0.0)).ok
    apply(state, service("cache-peers", "cache", 6379, 6379, "  clusterIP: None\n"))
    spec = services(state)["cache"].spec
    assert spec.networks == (NetworkAttachment("default", ("cache-peers",)),)
    assert spec.endpoint_mode == "dnsrr" and networks(state)["default"].vips == {}
