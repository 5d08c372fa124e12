"""Compose networks as overlay networks: the top-level definitions, each service's networks
and aliases, the default network of a file that uses networks, `expose:`, and errors that
name the field."""

from __future__ import annotations

import pytest

from node.api_networks import parse_create
from node.http_util import HttpError
from node.manifests import ManifestError, load_manifest
from node.manifests.networks import NetworkDef

STACK = """
name: shop
networks:
  appnet:
    driver: overlay
    attachable: true
    ipam: {config: [{subnet: 10.210.0.0/20}]}
  vault: {internal: true, labels: {team: a}}
  shared: {external: true, name: corp}
services:
  frontend:
    image: busybox
    networks: [appnet, shared]
  backend:
    image: busybox
    deploy: {endpoint_mode: dnsrr}
    expose: ["80", "9000/tcp"]
    networks:
      appnet: {aliases: [api]}
      vault:
  worker:
    image: busybox
"""


def test_networks_and_aliases_reach_the_specs_and_the_manifest():
    manifest = load_manifest(STACK, strict=True)
    specs = {s.name: s for s in manifest.specs}
    assert [(a.name, a.aliases) for a in specs["frontend"].networks] == [
        ("appnet", ()),
        ("corp", ()),
    ]
    assert [(a.name, a.aliases) for a in specs["backend"].networks] == [
        ("appnet", ("api",)),
        ("vault", ()),
    ]
    assert [a.name for a in specs["worker"].networks] == ["shop_default"], (
        "no networks: the file's default"
    )
    assert (specs["backend"].endpoint_mode, specs["frontend"].endpoint_mode) == ("dnsrr", "vip")
    assert {n.name: n for n in manifest.networks} == {
        "appnet": NetworkDef("appnet", "networks.appnet", attachable=True, subnet="10.210.0.0/20"),
        "vault": NetworkDef("vault", "networks.vault", internal=True, labels={"team": "a"}),
        "corp": NetworkDef("corp", "networks.shared", external=True),
        "shop_default": NetworkDef("shop_default", "networks.default"),
    }


def test_a_file_without_networks_keeps_its_services_off_the_overlay():
    manifest = load_manifest("services:\n  web:\n    image: busybox\n    ports: ['8080:80']\n")
    assert manifest.specs[0].networks == () and manifest.networks == ()


@pytest.mark.parametrize(
    "text, field",
    [
        (
            "services:\n  web:\n    image: b\n    networks: [nowhere]\n",
            "services.web.networks.nowhere",
        ),
        ("networks:\n  Bad Name: {}\nservices:\n  web:\n    image: b\n", "networks.Bad Name"),
        (
            "networks:\n  a: {internal: maybe}\nservices:\n  web:\n    image: b\n",
            "networks.a.internal",
        ),
        ("services:\n  web:\n    image: b\n    expose: [http]\n", "services.web.expose[0]"),
        (
            "networks:\n  a: {}\nservices:\n  web:\n    image: b\n    networks: {a: {aliases: [Not_A_Label]}}\n",
            "services.web.networks[0].aliases[0]",
        ),
    ],
)
def test_bad_networks_name_the_field(text, field):
    with pytest.raises(ManifestError) as info:
        load_manifest(text)
    assert info.value.field == field, info.value


def test_a_network_create_request_is_checked_field_by_field():
    cmd, exist_ok = parse_create({"name": "appnet", "subnet": "10.210.0.0/20", "exist_ok": True})
    assert (cmd.name, cmd.subnet, exist_ok) == ("appnet", "10.210.0.0/20", True)
    for body, field in (
        ({"name": "Bad"}, "name"),
        ({"name": "a", "internal": "yes"}, "internal"),
        ({"name": "a", "color": 1}, "color"),
        ([], "body"),
        ({"name": "a", "labels": {str(i): "" for i in range(65)}}, "labels"),
        ({"name": "a", "labels": {"k": "v" * 257}}, "labels.k"),
    ):
        with pytest.raises(HttpError) as info:
            parse_create(body)
        assert (info.value.status, info.value.field) == (400, field)


def test_compose_target_only_ports_are_listed_for_mesh_ports_and_applied_as_swarm_does():
    from consensus.tasks import Service
    from node.api_services import with_mesh_ports

    manifest = load_manifest(
        "services:\n  web:\n    image: b\n    ports: ['80', '8080:81', {target: 82}]\n"
    )
    assert manifest.mesh_ports == (("web", 80, "tcp"), ("web", 82, "tcp"))
    (web,) = with_mesh_ports(manifest.specs, manifest.mesh_ports, {})
    assert [(p.target, p.published) for p in web.ports] == [(80, 30000), (81, 8080), (82, 30001)]
    again = with_mesh_ports(manifest.specs, manifest.mesh_ports, {"web": Service("s1", web)})
    assert again == (web,), "a re-apply of the same file changes nothing"
