"""The service spec: shorthand parsing, canonical round trips, and errors naming the field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.model import Node
from consensus.services import (
    Constraint,
    PortSpec,
    ServiceSpec,
    SpecError,
    merge_spec,
    parse_constraint,
    parse_service_spec,
)
from consensus.units import parse_cpu, parse_duration, parse_memory
from consensus.wire import WireError, from_plain, to_plain


def spec(**plain) -> ServiceSpec:
    return parse_service_spec({"name": "web", "image": "nginx", **plain})


def test_shorthands_become_typed_values():
    s = spec(
        replicas=3,
        command="/bin/sh -c 'echo hi'",
        env=["A=1", "B=x=y"],
        ports=["8080:80", "53:53/udp", 9000],
        constraints=["node.labels.zone == a", "node.role!=voter"],
        preferences=["spread=node.labels.zone"],
        resources={
            "reservations": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": 1.5, "memory": "1G"},
        },
        health={
            "kind": "cmd",
            "command": "wget -q -O- localhost",
            "interval": "10s",
            "start_period": "1m30s",
        },
        restart={"condition": "on-failure", "delay": "500ms"},
        secrets=["db-password"],
        volumes=["data:/var/lib/data", "/srv:/srv:ro"],
        stop_grace_period="1m",
    )
    assert s.command == ("/bin/sh", "-c", "echo hi")
    assert s.env == {"A": "1", "B": "x=y"}
    assert s.ports == (PortSpec(80, 8080), PortSpec(53, 53, "udp"), PortSpec(9000))
    assert s.constraints == (
        Constraint("node.labels.zone", "==", "a"),
        Constraint("node.role", "!=", "voter"),
    )
    assert s.preferences[0].label == "zone"
    assert (s.resources.reservations.cpu_millis, s.resources.reservations.memory_bytes) == (
        100,
        128 << 20,
    )
    assert (s.resources.limits.cpu_millis, s.resources.limits.memory_bytes) == (1500, 1 << 30)
    assert s.health.command == ("/bin/sh", "-c", "wget -q -O- localhost")
    assert (s.health.interval, s.health.start_period) == (10.0, 90.0)
    assert (s.restart.condition, s.restart.delay) == ("on-failure", 0.5)
    assert s.volumes[0].type == "volume" and s.volumes[1].type == "bind" and s.volumes[1].read_only
    assert s.stop_grace_period == 60.0


def test_canonical_form_round_trips():
    s = spec(
        replicas=2,
        ports=["8080:80"],
        constraints=["node.labels.a==b"],
        resources={"reservations": {"memory": "64M"}},
        health={"kind": "http", "path": "/healthz"},
    )
    assert parse_service_spec(to_plain(s)) == s


@given(
    replicas=st.integers(0, 1000),
    cpu=st.integers(0, 64_000),
    mem=st.integers(0, 1 << 40),
    published=st.integers(1, 65535),
    target=st.integers(1, 65535),
    label=st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True),
    value=st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    op=st.sampled_from(["==", "!="]),
)
def test_any_valid_spec_round_trips(replicas, cpu, mem, published, target, label, value, op):
    s = spec(
        replicas=replicas,
        ports=[f"{published}:{target}"],
        constraints=[f"node.labels.{label}{op}{value}"],
        resources={"reservations": {"cpu_millis": cpu, "memory_bytes": mem}},
    )
    assert parse_service_spec(to_plain(s)) == s


@pytest.mark.parametrize(
    "plain, field, reason",
    [
        ({"replicas": -1}, "replicas", "between 0"),
        ({"name": "Web1"}, "name", "DNS label"),
        ({"name": "web_"}, "name", "DNS label"),
        ({"name": "-web"}, "name", "DNS label"),
        ({"name": "x" * 64}, "name", "DNS label"),
        ({"constraints": ["node.labels.zone=a"]}, "constraints[0]", "unknown constraint syntax"),
        ({"constraints": ["engine.labels.x==1"]}, "constraints[0]", "unsupported constraint key"),
        (
            {"resources": {"limits": {"memory": "12XB"}}},
            "resources.limits.memory",
            "cannot read '12XB'",
        ),
        (
            {"resources": {"reservations": {"cpu": "lots"}}},
            "resources.reservations.cpu",
            "cannot read 'lots'",
        ),
        (
            {"resources": {"reservations": {"cpu": 2}, "limits": {"cpu": 1}}},
            "resources.limits.cpu_millis",
            "below",
        ),
        ({"ports": ["70000:80"]}, "ports[0].published", "1-65535"),
        ({"ports": [{"target": 0}]}, "ports[0].target", "1-65535"),
        ({"ports": ["8080:80", "8080:81"]}, "ports[1].published", "already published by ports[0]"),
        ({"ports": ["80:80/sctp"]}, "ports[0].protocol", "must be one of"),
        (
            {"ports": [{"target": 80, "proxy_protocol": True}]},
            "ports[0].proxy_protocol",
            "published ingress tcp",
        ),
        (
            {"ports": [{"target": 80, "published": 80, "mode": "host", "proxy_protocol": True}]},
            "ports[0].proxy_protocol",
            "published ingress tcp",
        ),
        (
            {"ports": [{"target": 53, "published": 53, "protocol": "udp", "idle_timeout": 5}]},
            "ports[0].idle_timeout",
            "published ingress tcp",
        ),
        (
            {"ports": [{"target": 80, "published": 80, "idle_timeout": "2d"}]},
            "ports[0].idle_timeout",
            "duration",
        ),
        (
            {"ports": [{"target": 80, "published": 80, "idle_timeout": 172800}]},
            "ports[0].idle_timeout",
            "86400",
        ),
        (
            {"ports": [{"target": 80, "published": 80, "proxy_protocol": "v3"}]},
            "ports[0].proxy_protocol",
            "must be v1, v2, true or false",
        ),
        ({"health": {"kind": "http"}}, "health.port", "needs a port"),
        ({"health": {"kind": "cmd"}}, "health.command", "needs a command"),
        (
            {"health": {"kind": "cmd", "command": "true", "interval": "soon"}},
            "health.interval",
            "duration",
        ),
        ({"restart": {"condition": "always"}}, "restart.condition", "must be one of"),
        ({"update": {"max_failure_ratio": 2}}, "update.max_failure_ratio", "between 0 and 1"),
        ({"volumes": ["relative:data"]}, "volumes[0].target", "absolute"),
        ({"replicas": "3"}, "replicas", "must be an integer"),
        ({"colour": "blue"}, "colour", "unknown field"),
        ({"image": ""}, "image", "image reference"),
    ],
)
def test_bad_specs_name_the_field(plain, field, reason):
    with pytest.raises(SpecError) as info:
        spec(**plain)
    assert info.value.field == field
    assert reason in info.value.reason


def test_a_published_port_can_ask_the_mesh_for_a_proxy_header_and_an_idle_timeout():
    port = spec(
        ports=[{"target": 80, "published": 8080, "proxy_protocol": True, "idle_timeout": "5m"}]
    ).ports[0]
    assert (port.proxy_protocol, port.idle_timeout) == ("v2", 300.0)  # true: version 2
    v1 = spec(ports=[{"target": 80, "published": 8080, "proxy_protocol": "v1"}]).ports[0]
    assert v1.proxy_protocol == "v1"


def test_a_port_stored_before_proxy_protocol_versions_still_reads_and_means_v2():
    stored = {"target": 80, "published": 8080, "proxy_protocol": True}
    assert from_plain(PortSpec, stored).proxy_version == "v2"
    assert from_plain(PortSpec, {**stored, "proxy_protocol": False}).proxy_version == ""
    assert spec(ports=["8080:80"]).ports[0] == PortSpec(80, 8080)  # neither unless asked


def test_not_an_object_is_rejected():
    with pytest.raises(SpecError) as info:
        parse_service_spec(["web"])
    assert info.value.field == "<root>"


def test_merge_replaces_top_level_fields_and_rechecks():
    s = spec(replicas=2, ports=["8080:80"])
    assert merge_spec(s, {"replicas": 5}) == spec(replicas=5, ports=["8080:80"])
    with pytest.raises(SpecError):
        merge_spec(s, {"replicas": -5})


@pytest.mark.parametrize(
    "text, field, value, ok",
    [
        ("node.labels.zone==A", "zone", "a", True),  # compared case-insensitively, as Swarm
        ("node.labels.zone==a", "zone", "b", False),
        ("node.labels.zone!=a", "zone", "b", True),
        ("node.labels.zone!=a", None, None, True),  # a missing label is never equal
        ("node.labels.zone==a", None, None, False),
        ("node.hostname==node1", None, None, True),
        ("node.id!=n1", None, None, False),
        ("node.role==member", None, None, True),
        ("node.role==worker", None, None, True),  # Swarm's roles: a worker is a member
        ("node.role == Manager", None, None, False),  # and a manager a voter
        ("node.role!=manager", None, None, True),
    ],
)
def test_constraint_matching(text, field, value, ok):
    node = Node("n1", "node1", "127.0.0.2", 1, 2, 3, labels={field: value} if field else {})
    assert parse_constraint(text, "c").matches(node) is ok


@pytest.mark.parametrize(
    "value, millis", [(0.5, 500), ("0.5", 500), ("100m", 100), (2, 2000), ("1.25", 1250)]
)
def test_cpu_units(value, millis):
    assert parse_cpu(value, "cpu") == millis


@pytest.mark.parametrize(
    "value, kube, expected",
    [
        ("128Mi", False, 128 << 20),
        ("64M", False, 64 << 20),
        ("1G", False, 1 << 30),
        ("512k", False, 512 << 10),
        ("100MB", False, 100 << 20),
        (1024, False, 1024),
        ("128Mi", True, 128 << 20),
        ("64M", True, 64_000_000),
        ("1Gi", True, 1 << 30),
        ("500", True, 500),
    ],
)
def test_memory_units(value, kube, expected):
    assert parse_memory(value, "m", kubernetes=kube) == expected


@pytest.mark.parametrize("value", ["12XB", "-5M", "M", "", "128m"])
def test_bad_memory_names_the_field(value):
    with pytest.raises(WireError) as info:
        parse_memory(value, "limits.memory", kubernetes=value == "128m")
    assert info.value.field == "limits.memory"


@pytest.mark.parametrize(
    "value, seconds",
    [("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600), (3, 3), ("2.5", 2.5)],
)
def test_durations(value, seconds):
    assert parse_duration(value, "d") == seconds


@pytest.mark.parametrize("value", ["-1s", "10 parsecs", "1m-3s", True, float("nan")])
def test_bad_durations(value):
    with pytest.raises(WireError):
        parse_duration(value, "d")
