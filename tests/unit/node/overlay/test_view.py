"""(state, gossip entries, members) -> this node's overlay: the networks it holds a lease in,
each service's VIP, aliases and healthy task addresses there, and the live peers; and the
settings of each network's engine network."""

from __future__ import annotations

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import Node
from consensus.networks import CreateNetwork
from consensus.nodes import RegisterNode
from consensus.services import parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import CreateService
from consensus.wire import to_plain
from netoverlay.gossip.model import Member, MemberState, TableEntry
from netoverlay.overlay.types import VipPort
from node.mesh.announce import Announcement, endpoint_key
from node.overlay.docker_networks import existing_settings, wanted_settings
from node.overlay.view import node_overlay, overlay_addresses, seats


def state_with_stack() -> ClusterState:
    state = ClusterState()
    for i in range(3):
        assert state.apply(
            RegisterNode(Node(f"n{i}", f"node{i}", f"10.1.0.{i + 1}", 7420, 7421, 7422))
        ).ok
    assert state.apply(CreateNetwork("a", "appnet", 1.0)).ok
    assert state.apply(CreateNetwork("b", "othernet", 1.0)).ok
    backend = parse_service_spec(
        {
            "name": "backend",
            "image": "img",
            "networks": [{"name": "appnet", "aliases": ["api"]}],
            "ports": [{"target": 8080, "vip_port": 80}, {"target": 9000}],
        }
    )
    assert state.apply(CreateService("s1", backend, 1.0)).ok
    return state


def announce(owner: str, task_id: str, service: str, networks: dict, tombstone=False) -> TableEntry:
    return TableEntry(
        owner,
        endpoint_key(task_id),
        1,
        to_plain(Announcement(service, "10.1.0.9", networks=networks)),
        tombstone,
    )


MEMBERS = [
    Member("n0", ("10.1.0.1", 7422)),
    Member("n1", ("10.1.0.2", 7422)),
    Member("n2", ("10.1.0.3", 7422), state=MemberState.DEAD),
]


def test_the_overlay_of_a_node():
    entries = [
        announce("n1", "t1", "backend", {"appnet": "10.200.0.66"}),
        announce("n0", "t2", "backend", {"appnet": "10.200.0.2"}),
        announce("n2", "t3", "backend", {"appnet": "10.200.0.130"}),  # its node is dead
        announce("n1", "t4", "backend", {"appnet": "10.200.0.67"}, tombstone=True),
        TableEntry("n1", "ep/t5", 1, {"service": "x", "address": "nonsense"}),
    ]  # malformed: skipped
    overlay = node_overlay(state_with_stack(), "n0", "10.1.0.1", entries, MEMBERS, 4789)
    assert (overlay.local_address, overlay.peers, overlay.vxlan_port) == (
        "10.1.0.1",
        ("10.1.0.2",),
        4789,
    )
    app, other = overlay.networks
    assert (app.name, app.vni, app.lease, app.gateway, app.tasks_range) == (
        "appnet",
        4096,
        "10.200.0.0/26",
        "10.200.0.1",
        "10.200.0.0/21",
    )
    (backend,) = app.services
    assert (backend.name, backend.vip, backend.aliases, backend.tasks) == (
        "backend",
        "10.200.8.1",
        ("api",),
        ("10.200.0.2", "10.200.0.66"),
    )
    assert backend.ports == (VipPort(80, 8080, "tcp"),), "only a port its VIP maps"
    assert (other.name, other.services) == ("othernet", ())


def test_seats_are_the_networks_this_node_holds_a_lease_in():
    state = state_with_stack()
    here = seats(state, "n1")
    assert sorted(here) == ["appnet", "othernet"]
    assert (here["appnet"].runtime_network, here["appnet"].gateway) == (
        "shoal-appnet",
        "10.200.0.65",
    )
    assert seats(state, "stranger") == {}


def test_overlay_addresses_keep_only_our_runtime_networks():
    assert overlay_addresses({"shoal-appnet": "10.200.0.2", "bridge": "172.17.0.2"}) == {
        "appnet": "10.200.0.2"
    }


def test_an_engine_network_as_docker_reports_it_matches_what_was_asked():
    overlay = node_overlay(state_with_stack(), "n0", "10.1.0.1", [], MEMBERS, 4789)
    network = overlay.networks[0]
    attrs = {
        "IPAM": {
            "Config": [
                {"Subnet": "10.200.0.0/21", "IPRange": "10.200.0.0/26", "Gateway": "10.200.0.1"}
            ]
        },
        "Options": {
            "com.docker.network.bridge.name": "sov4096",
            "com.docker.network.driver.mtu": "1450",
        },
    }
    assert existing_settings(attrs) == wanted_settings(network, 1450)
    assert existing_settings(attrs) != wanted_settings(network, 1400), "an MTU change remakes it"
