"""RunSpec and PortSpec reject bad values naming the field; observations find endpoints."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.wire import WireError, from_plain, to_plain
from node.health import HealthCheck
from node.runtime.model import Endpoint, NodeFingerprint, PortSpec, RunSpec, TaskObservation


def spec(**overrides) -> RunSpec:
    return RunSpec(**{"task_id": "t1", "service": "web", "slot": 0, "image": "", **overrides})


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"task_id": ""}, "task_id"),
        ({"task_id": "../etc"}, "task_id"),
        ({"task_id": "a/b"}, "task_id"),
        ({"service": ""}, "service"),
        ({"slot": -1}, "slot"),
        ({"memory_bytes": -1}, "memory_bytes"),
        ({"stop_grace": -0.5}, "stop_grace"),
        ({"ports": (PortSpec(80), PortSpec(80))}, "ports"),
        ({"labels": {"shoal.task": "x"}}, "labels.shoal.task"),
    ],
)
def test_run_spec_rejects_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        spec(**overrides)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"target": 0}, "target"),
        ({"target": 70000}, "target"),
        ({"target": 80, "protocol": "sctp"}, "protocol"),
        ({"target": 80, "published": -1}, "published"),
    ],
)
def test_port_spec_rejects_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        PortSpec(**kwargs)


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", fullmatch=True))
def test_safe_task_ids_are_accepted(task_id):
    assert spec(task_id=task_id).task_id == task_id


def test_run_spec_round_trips_through_plain_values():
    original = spec(
        ports=(PortSpec(80), PortSpec(53, "udp", 5353)),
        env={"A": "1"},
        healthcheck=HealthCheck("http", path="/h"),
        dns_servers=("127.0.0.1",),
    )
    assert from_plain(RunSpec, to_plain(original)) == original
    with pytest.raises(WireError, match="ports\\[0\\]: target"):
        from_plain(RunSpec, {**to_plain(original), "ports": [{"target": 0}]})


def test_owner_labels_add_shoal_labels_to_the_users():
    assert spec(slot=3, labels={"team": "a"}).owner_labels("n1") == {
        "team": "a",
        "shoal.managed": "1",
        "shoal.node": "n1",
        "shoal.task": "t1",
        "shoal.service": "web",
        "shoal.slot": "3",
    }


def test_observation_endpoint_lookup():
    seen = TaskObservation(
        "t1",
        "running",
        endpoints=(
            Endpoint(53, "udp", "h", 1),
            Endpoint(80, "tcp", "h", 2),
            Endpoint(443, "tcp", "h", 3),
        ),
    )
    assert seen.endpoint(443).port == 3
    assert seen.endpoint(0).port == 2  # the first tcp port
    assert seen.endpoint(53, "udp").port == 1
    assert seen.endpoint(53) is None
    assert seen.alive and not TaskObservation("t1", "exited").alive


def test_fingerprint_as_scheduler_resources():
    resources = NodeFingerprint(2000, 1 << 30, "process").resources
    assert (resources.cpu_millis, resources.memory_bytes) == (2000, 1 << 30)
