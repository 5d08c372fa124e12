"""Overlay networks in the state machine: the pure allocator (subnets, leases, VIPs, VXLAN
ids), leases following nodes, VIPs following services, checks that name the field, and a
property test that no address is ever given twice whatever the order of events."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import consensus  # noqa: F401  (registers commands and tables)
from consensus import ipam
from consensus.model import Node
from consensus.networks import CreateNetwork, RemoveNetwork, networks
from consensus.nodes import RegisterNode, RemoveNode
from consensus.services import parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import CreateService, DeleteService, UpdateService


def node(i: int) -> Node:
    return Node(f"n{i}", f"node{i}", f"10.1.0.{i + 1}", 7420, 7421, 7422)


def spec(name: str, *nets: str):
    return parse_service_spec({"name": name, "image": "busybox", "networks": list(nets)})


def make_state(nodes: int = 2) -> ClusterState:
    state = ClusterState()
    for i in range(nodes):
        assert state.apply(RegisterNode(node(i))).ok
    return state


# -- the allocator ---------------------------------------------------------------------


def test_networks_take_the_lowest_free_subnet_of_the_cluster_range():
    assert ipam.next_network_subnet("10.200.0.0/13", []) == "10.200.0.0/20"
    assert ipam.next_network_subnet("10.200.0.0/13", ["10.200.0.0/20"]) == "10.200.16.0/20"
    # A network given its own subnet makes the allocator step around it.
    assert (
        ipam.next_network_subnet("10.200.0.0/13", ["10.200.0.0/21", "10.200.20.0/24"])
        == "10.200.32.0/20"
    )
    with pytest.raises(ipam.IpamError, match="no free /20"):
        ipam.next_network_subnet("10.200.0.0/20", ["10.200.0.0/20"])


def test_a_network_splits_into_task_leases_and_a_vip_half():
    subnet = "10.200.0.0/20"
    assert str(ipam.tasks_range(subnet)) == "10.200.0.0/21"
    assert str(ipam.vip_range(subnet)) == "10.200.8.0/21"
    assert ipam.next_lease(subnet, []) == "10.200.0.0/26"
    assert ipam.next_lease(subnet, ["10.200.0.0/26"]) == "10.200.0.64/26"
    assert ipam.lease_gateway("10.200.0.64/26") == "10.200.0.65"
    assert ipam.next_vip(subnet, []) == "10.200.8.1"
    assert ipam.next_vip(subnet, ["10.200.8.1"]) == "10.200.8.2"
    all_leases = [str(n) for n in ipam.tasks_range(subnet).subnets(new_prefix=26)]
    assert len(all_leases) == 32 and ipam.next_lease(subnet, all_leases) is None


@pytest.mark.parametrize(
    "subnet, reason",
    [("10.200.0.0/25", "too small"), ("nonsense", "CIDR"), ("fd00::/64", "IPv4 only")],
)
def test_check_subnet_says_what_is_wrong(subnet, reason):
    with pytest.raises(ipam.IpamError, match=reason):
        ipam.check_subnet(subnet)


def test_a_cluster_range_holds_at_least_one_network():
    assert ipam.check_cluster_cidr("10.50.0.0/16") == "10.50.0.0/16"
    with pytest.raises(ipam.IpamError, match="overlay_cidr"):
        ipam.check_cluster_cidr("10.50.0.0/24")


def test_networks_come_from_the_range_the_cluster_was_made_with():
    from consensus.nodes import BootstrapCluster

    state = ClusterState()
    assert state.apply(BootstrapCluster("c1", 1.0, "10.50.0.0/16")).ok
    assert state.apply(CreateNetwork("id1", "appnet", 1.0)).ok
    assert networks(state)["appnet"].subnet == "10.50.0.0/20"


def test_vnis_start_at_4096_and_fill_gaps():
    assert ipam.next_vni([]) == 4096
    assert ipam.next_vni([4096, 4098]) == 4097


# -- the state machine -------------------------------------------------------------------


def test_create_leases_every_node_and_a_later_node_gets_one_too():
    state = make_state(2)
    result = state.apply(CreateNetwork("id1", "appnet", 1.0))
    assert result.ok and result.value == {"id": "id1", "subnet": "10.200.0.0/20"}
    net = networks(state)["appnet"]
    assert (net.vni, net.leases) == (4096, {"n0": "10.200.0.0/26", "n1": "10.200.0.64/26"})
    assert state.apply(RegisterNode(node(2))).ok
    assert networks(state)["appnet"].leases["n2"] == "10.200.0.128/26"
    assert state.apply(RemoveNode("n1")).ok
    assert "n1" not in networks(state)["appnet"].leases
    assert state.apply(RegisterNode(node(3))).ok
    assert networks(state)["appnet"].leases["n3"] == "10.200.0.64/26", "the freed lease is reused"


def test_two_networks_get_apart_subnets_and_vnis():
    state = make_state(1)
    assert state.apply(CreateNetwork("a", "front", 1.0)).ok
    assert state.apply(CreateNetwork("b", "back", 1.0)).ok
    front, back = networks(state)["front"], networks(state)["back"]
    assert not ipaddress.ip_network(front.subnet).overlaps(ipaddress.ip_network(back.subnet))
    assert front.vni != back.vni


@pytest.mark.parametrize(
    "cmd, code, field",
    [
        (CreateNetwork("x", "Bad Name", 1.0), 400, "name"),
        (CreateNetwork("x", "appnet", 1.0), 409, "name"),
        (CreateNetwork("x", "other", 1.0, subnet="10.200.4.0/22"), 409, "subnet"),
        (CreateNetwork("x", "other", 1.0, subnet="10.9.0.0/28"), 400, "subnet"),
    ],
)
def test_create_refuses_with_the_field(cmd, code, field):
    state = make_state(1)
    assert state.apply(CreateNetwork("id1", "appnet", 1.0)).ok
    result = state.apply(cmd)
    assert (result.ok, result.code) == (False, code), result
    assert result.error.startswith(f"{field}:")


def test_retried_create_with_the_same_id_is_a_success():
    state = make_state(1)
    assert state.apply(CreateNetwork("id1", "appnet", 1.0)).ok
    assert state.apply(CreateNetwork("id1", "appnet", 1.0)).ok


def test_services_get_a_vip_on_each_network_they_join_and_give_it_back():
    state = make_state(1)
    for name in ("front", "back"):
        assert state.apply(CreateNetwork(name, name, 1.0)).ok
    assert state.apply(CreateService("s1", spec("api", "front", "back"), 1.0)).ok
    assert state.apply(CreateService("s2", spec("db", "back"), 1.0)).ok
    front, back = networks(state)["front"], networks(state)["back"]
    assert front.vips == {"api": str(ipam.vip_range(front.subnet).network_address + 1)}
    assert set(back.vips) == {"api", "db"} and len(set(back.vips.values())) == 2
    assert state.apply(UpdateService(spec("api", "back"), 2.0)).ok
    assert networks(state)["front"].vips == {}
    assert networks(state)["back"].vips["api"] == back.vips["api"], "a VIP stays while it is used"
    assert state.apply(DeleteService("db", 3.0)).ok
    assert set(networks(state)["back"].vips) == {"api"}


def test_a_dnsrr_service_has_no_vip_and_gives_its_vip_back_when_it_turns_dnsrr():
    state = make_state(1)
    assert state.apply(CreateNetwork("n", "appnet", 1.0)).ok
    headless = parse_service_spec(
        {"name": "db", "image": "img", "networks": ["appnet"], "endpoint_mode": "dnsrr"}
    )
    assert state.apply(CreateService("s1", headless, 1.0)).ok
    assert state.apply(CreateService("s2", spec("api", "appnet"), 1.0)).ok
    assert networks(state)["appnet"].vips == {"api": "10.200.8.1"}
    turned = parse_service_spec(
        {"name": "api", "image": "busybox", "networks": ["appnet"], "endpoint_mode": "dnsrr"}
    )
    assert state.apply(UpdateService(turned, 2.0)).ok
    assert networks(state)["appnet"].vips == {}


def test_a_service_on_a_missing_network_is_refused_naming_the_field():
    state = make_state(1)
    result = state.apply(CreateService("s1", spec("api", "nowhere"), 1.0))
    assert (result.ok, result.code) == (False, 400)
    assert result.error.startswith("networks[0]:")


def test_a_network_in_use_cannot_be_removed():
    state = make_state(1)
    assert state.apply(CreateNetwork("n", "appnet", 1.0)).ok
    assert state.apply(CreateService("s1", spec("api", "appnet"), 1.0)).ok
    result = state.apply(RemoveNetwork("appnet"))
    assert (result.ok, result.code) == (False, 409) and "api" in result.error
    assert state.apply(DeleteService("api", 2.0)).ok
    assert state.apply(RemoveNetwork("appnet")).ok
    assert networks(state) == {}


def test_networks_survive_a_snapshot():
    state = make_state(2)
    assert state.apply(CreateNetwork("n", "appnet", 1.0, labels={"team": "a"})).ok
    assert state.apply(CreateService("s1", spec("api", "appnet"), 1.0)).ok
    restored = ClusterState.from_msgpack(state.to_msgpack())
    assert networks(restored) == networks(state)


# -- never twice ---------------------------------------------------------------------------

_events = st.lists(
    st.one_of(
        st.tuples(st.just("node+"), st.integers(0, 40)),
        st.tuples(st.just("node-"), st.integers(0, 40)),
        st.tuples(st.just("net+"), st.integers(0, 3)),
        st.tuples(st.just("net-"), st.integers(0, 3)),
        st.tuples(st.just("svc+"), st.integers(0, 20), st.sets(st.integers(0, 3), max_size=3)),
        st.tuples(st.just("svc-"), st.integers(0, 20)),
    ),
    max_size=80,
)


def _apply(state: ClusterState, event: tuple) -> None:
    kind, number = event[0], event[1]
    if kind == "node+":
        state.apply(RegisterNode(node(number)))
    elif kind == "node-":
        state.apply(RemoveNode(f"n{number}"))
    elif kind == "net+":
        state.apply(CreateNetwork(f"id{number}", f"net{number}", 1.0))
    elif kind == "net-":
        state.apply(RemoveNetwork(f"net{number}"))
    elif kind == "svc+":
        nets = [f"net{n}" for n in sorted(event[2])]
        cmd = UpdateService if f"s{number}" in state.table("services") else CreateService
        state.apply(
            cmd(spec(f"s{number}", *nets), 1.0)
            if cmd is UpdateService
            else cmd(f"id{number}", spec(f"s{number}", *nets), 1.0)
        )
    else:
        state.apply(DeleteService(f"s{number}", 1.0))


@settings(max_examples=150, deadline=None)
@given(_events)
def test_no_address_is_ever_given_twice(events):
    state = make_state(3)
    for event in events:
        _apply(state, event)
        table = networks(state)
        subnets = [ipaddress.ip_network(n.subnet) for n in table.values()]
        for i, a in enumerate(subnets):
            assert not any(a.overlaps(b) for b in subnets[i + 1 :]), "two networks share addresses"
        assert len({n.vni for n in table.values()}) == len(table)
        for net in table.values():
            leases = [ipaddress.ip_network(lease) for lease in net.leases.values()]
            assert len(set(leases)) == len(leases), f"a lease of {net.name} is given twice"
            assert all(lease.subnet_of(ipam.tasks_range(net.subnet)) for lease in leases)
            assert set(net.leases) <= set(state.table("nodes")), "a removed node keeps a lease"
            assert len(set(net.vips.values())) == len(net.vips), (
                f"a VIP of {net.name} is given twice"
            )
            assert all(
                ipaddress.ip_address(v) in ipam.vip_range(net.subnet) for v in net.vips.values()
            )
            joined = {
                name
                for name, svc in state.table("services").items()
                if net.name in {a.name for a in svc.spec.networks}
            }
            assert set(net.vips) == joined, "VIPs follow the services on the network"
    # Replayed from the start, the same events give the same state: apply is deterministic.
    again = make_state(3)
    for event in events:
        _apply(again, event)
    assert again.to_plain() == state.to_plain()
