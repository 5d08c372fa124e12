"""(services, gossip entries, members) -> (published ports, endpoints, DNS records)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consensus.services import PortSpec, ServiceSpec
from consensus.tasks import PortBinding
from consensus.wire import to_plain
from netoverlay.gossip.model import Member, MemberState, TableEntry
from netoverlay.lb.types import Backend, ServicePort
from node.api.mesh import service_endpoints_json
from node.mesh.announce import Announcement, endpoint_key
from node.mesh.view import INGRESS_META, build_view

WEB = ServiceSpec(
    "web", "img", ports=(PortSpec(80, 8080), PortSpec(443, 0), PortSpec(9000, 9000, mode="host"))
)
DB = ServiceSpec("db", "img", ports=(PortSpec(5432),))
MEMBERS = [
    Member("n1", ("10.0.0.1", 7422), meta={INGRESS_META: "192.0.2.1"}),
    Member("n2", ("10.0.0.2", 7422)),  # announced no ingress address: its gossip host
    Member("n3", ("10.0.0.3", 7422), state=MemberState.SUSPECT),  # not yet dead: serves
    Member("n4", ("10.0.0.4", 7422), state=MemberState.DEAD),
]


def entry(
    owner: str,
    task_id: str,
    service: str,
    address: str,
    *ports: tuple[int, int, str],
    version: int = 1,
    tombstone: bool = False,
) -> TableEntry:
    bindings = tuple(PortBinding(t, h, p) for t, h, p in ports)  # type: ignore[arg-type]
    return TableEntry(
        owner,
        endpoint_key(task_id),
        version,
        to_plain(Announcement(service, address, bindings)),
        tombstone,
    )


ENTRIES = [
    entry(
        "n1", "w1", "web", "10.0.0.1", (80, 31001, "tcp"), (443, 31002, "tcp"), (53, 31003, "udp")
    ),
    entry("n2", "w2", "web", "10.0.0.2", (80, 31001, "tcp")),
    entry("n3", "d1", "db", "10.0.0.3", (5432, 32000, "tcp")),
    entry("n4", "w3", "web", "10.0.0.4", (80, 31001, "tcp")),  # its node is dead
    entry("n2", "w4", "web", "10.0.0.2", (80, 31009, "tcp"), tombstone=True),
    TableEntry("n2", "other/key", 1, {"anything": 1}),  # not an endpoint entry
]


def test_ports_endpoints_and_ingress_addresses():
    view = build_view([WEB, DB], ENTRIES, MEMBERS)
    assert view.ports == (ServicePort("web", 8080, 80), ServicePort("web", 9000, 9000, mode="host"))
    assert view.endpoints == {
        "db": [Backend("db", "d1", "n3", "10.0.0.3", 32000, target_port=5432)],
        "web": [
            Backend("web", "w1", "n1", "10.0.0.1", 31001, target_port=80),
            Backend("web", "w1", "n1", "10.0.0.1", 31002, target_port=443),
            Backend("web", "w1", "n1", "10.0.0.1", 31003, target_port=53, protocol="udp"),
            Backend("web", "w2", "n2", "10.0.0.2", 31001, target_port=80),
        ],
    }
    assert view.ingress_addresses == ("10.0.0.2", "10.0.0.3", "192.0.2.1")
    assert view.problems == ()


def test_the_mesh_serves_a_port_with_the_proxy_header_and_idle_timeout_its_spec_asks_for():
    spec = ServiceSpec(
        "api",
        "img",
        ports=(PortSpec(80, 8081, proxy_protocol="v2", idle_timeout=30.0), PortSpec(81, 8082)),
    )
    assert build_view([spec], [], MEMBERS).ports == (
        ServicePort("api", 8081, 80, proxy_protocol="v2", idle_timeout=30.0),
        ServicePort("api", 8082, 81),
    )


def test_dns_answers_every_node_for_published_services_and_tasks_otherwise():
    records = build_view([WEB, DB], ENTRIES, MEMBERS).records
    assert records["web"].addresses == ("10.0.0.2", "10.0.0.3", "192.0.2.1")
    assert {t.task_id for t in records["web"].tasks} == {"w1", "w2"}
    assert records["db"].addresses == ("10.0.0.3",)  # not published: where its task runs


def test_a_service_nobody_announces_yet_still_has_its_ports_and_name():
    view = build_view([DB], [], MEMBERS[:1])
    assert view.endpoints == {} and view.records["db"].addresses == ()


def test_malformed_entries_are_left_out_with_the_field_and_the_rest_served():
    good = entry("n1", "w1", "web", "10.0.0.1", (80, 31001, "tcp"))
    bad = [
        TableEntry("n1", "ep/a", 1, "not an object"),
        TableEntry("n1", "ep/b", 1, {"service": "web", "address": "nowhere", "ports": []}),
        TableEntry(
            "n1",
            "ep/c",
            1,
            {"service": "web", "address": "10.0.0.1", "ports": [{"target": 80, "host_port": 0}]},
        ),
        TableEntry(
            "n1",
            "ep/d",
            1,
            {"service": "web", "address": "10.0.0.1", "ports": [{"target": "80", "host_port": 1}]},
        ),
        TableEntry("n1", "ep/e", 1, {"address": "10.0.0.1"}),
    ]
    view = build_view([WEB], [good, *bad], MEMBERS[:1])
    assert [e.task_id for e in view.endpoints["web"]] == ["w1"]
    problems = dict(p.split(": ", 1) for p in view.problems)
    assert set(problems) == {"n1/ep/a", "n1/ep/b", "n1/ep/c", "n1/ep/d", "n1/ep/e"}
    assert "must be an object" in problems["n1/ep/a"]
    assert "address" in problems["n1/ep/b"]
    assert "port" in problems["n1/ep/c"]
    assert "ports[0].target" in problems["n1/ep/d"]
    assert "service" in problems["n1/ep/e"]


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["service", "address", "ports", "weight", "target", "host_port", "protocol"]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(st.lists(plain, max_size=6))
def test_garbage_values_never_break_the_view_nor_hide_a_good_entry(values):
    good = entry("n1", "good", "web", "10.0.0.1", (80, 31001, "tcp"))
    entries = [TableEntry("n1", endpoint_key(f"t{i}"), 1, v) for i, v in enumerate(values)]
    view = build_view([WEB], [*entries, good], MEMBERS[:1])
    assert "good" in {e.task_id for e in view.endpoints["web"]}
    # Each garbage entry is either a (degenerate but valid) announcement or a named problem.
    assert all(p.startswith("n1/ep/t") for p in view.problems)


def test_the_api_shows_a_services_ports_and_endpoints_with_node_names():
    view = build_view([WEB], ENTRIES, MEMBERS)
    body = service_endpoints_json(view, "web", {"n1": "one", "n2": "two"})
    assert body["ports"][0] == {
        "published": 8080,
        "target": 80,
        "protocol": "tcp",
        "mode": "ingress",
        "addresses": list(view.ingress_addresses),
    }
    assert body["ports"][1]["addresses"] == []  # host mode: only where a task runs
    assert [(e["node_name"], e["endpoint"], e["target_port"]) for e in body["endpoints"]] == [
        ("one", "10.0.0.1:31001", 80),
        ("one", "10.0.0.1:31002", 443),
        ("one", "10.0.0.1:31003", 53),
        ("two", "10.0.0.2:31001", 80),
    ]


def test_the_mesh_reaches_a_service_on_an_overlay_network_at_its_tasks_network_addresses():
    from consensus.services import NetworkAttachment

    api = ServiceSpec(
        "api",
        "img",
        ports=(PortSpec(80, 30000), PortSpec(81)),
        networks=(NetworkAttachment("appnet"),),
    )
    on_net = TableEntry(
        "n1",
        endpoint_key("a1"),
        1,
        to_plain(Announcement("api", "10.0.0.1", networks={"appnet": "10.200.0.66"})),
    )
    # A node without the overlay ran its task on the runtime's network, with a host port.
    off_net = entry("n2", "a2", "api", "10.0.0.2", (80, 31005, "tcp"))
    view = build_view([api], [on_net, off_net], MEMBERS)
    assert [(e.address, e.port, e.target_port) for e in view.endpoints["api"]] == [
        ("10.200.0.66", 80, 80),
        ("10.0.0.2", 31005, 80),
    ]
