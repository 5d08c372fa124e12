"""The pure RunSpec -> container translation and the reading of inspect data (no daemon)."""

from __future__ import annotations

import pytest

from node.health import HealthCheck
from node.runtime.docker_config import (
    container_kwargs,
    container_name,
    observation_from_attrs,
    parse_docker_time,
    stats_from_docker,
)
from node.runtime.model import Endpoint, PortSpec, RunSpec


def spec(**overrides) -> RunSpec:
    return RunSpec(
        **{"task_id": "t1", "service": "web", "slot": 2, "image": "busybox:1", **overrides}
    )


def test_identity_labels_and_process_settings():
    kwargs = container_kwargs(spec(env={"A": "1"}, labels={"team": "x"}), "node-a")
    assert kwargs["image"] == "busybox:1"
    assert kwargs["name"] == container_name(spec()) == "shoal-web.2.t1"
    assert kwargs["environment"] == {"A": "1"}
    assert kwargs["labels"] == {
        "team": "x",
        "shoal.managed": "1",
        "shoal.node": "node-a",
        "shoal.task": "t1",
        "shoal.service": "web",
        "shoal.slot": "2",
    }
    assert kwargs["init"] is True
    assert kwargs["restart_policy"] == {"Name": "no"}


@pytest.mark.parametrize(
    "overrides, expected, absent",
    [
        (
            {},
            {},
            {
                "nano_cpus",
                "mem_limit",
                "memswap_limit",
                "ports",
                "dns",
                "entrypoint",
                "command",
                "healthcheck",
            },
        ),
        ({"cpu_millis": 1500}, {"nano_cpus": 1_500_000_000}, {"mem_limit"}),
        (
            {"memory_bytes": 64 << 20},
            {"mem_limit": 64 << 20, "memswap_limit": 64 << 20},
            {"nano_cpus"},
        ),
        (
            {"command": ("/bin/sh", "-c"), "args": ("echo hi",)},
            {"entrypoint": ["/bin/sh", "-c"], "command": ["echo hi"]},
            set(),
        ),
        ({"args": ("httpd", "-f")}, {"command": ["httpd", "-f"]}, {"entrypoint"}),
        (
            {"ports": (PortSpec(80), PortSpec(53, "udp")), "advertise_address": "127.0.0.2"},
            {"ports": {"80/tcp": ("127.0.0.2", None), "53/udp": ("127.0.0.2", None)}},
            set(),
        ),
        (
            {"ports": (PortSpec(80, published=8080),)},
            {"ports": {"80/tcp": ("127.0.0.1", 8080)}},
            set(),
        ),
        ({"dns_servers": ("127.0.0.1",)}, {"dns": ["127.0.0.1"]}, {"dns_search"}),
        (
            {"dns_servers": ("10.0.0.1",), "dns_search": ("shoal",)},
            {"dns": ["10.0.0.1"], "dns_search": ["shoal"]},
            set(),
        ),
        ({"healthcheck": HealthCheck("http", path="/health")}, {}, {"healthcheck"}),
        (
            {"networks": ("shoal-appnet", "shoal-db")},
            {"network": "shoal-appnet"},
            set(),
        ),  # the rest join before start
        ({}, {}, {"network"}),
        (
            {
                "healthcheck": HealthCheck(
                    "cmd", command=("true",), interval=2, timeout=1, retries=4, start_period=0.5
                )
            },
            {
                "healthcheck": {
                    "test": ["CMD", "true"],
                    "interval": 2_000_000_000,
                    "timeout": 1_000_000_000,
                    "retries": 4,
                    "start_period": 500_000_000,
                }
            },
            set(),
        ),
    ],
)
def test_translation_table(overrides, expected, absent):
    kwargs = container_kwargs(spec(**overrides), "node-a")
    for key, value in expected.items():
        assert kwargs[key] == value, key
    assert not absent & kwargs.keys()


def attrs(
    status="running",
    exit_code=0,
    *,
    error="",
    oom=False,
    health=None,
    ports=None,
    started="2026-11-27T20:01:02.123456789Z",
    memory=0,
):
    state = {
        "Status": status,
        "ExitCode": exit_code,
        "Error": error,
        "OOMKilled": oom,
        "StartedAt": started,
    }
    if health is not None:
        state["Health"] = {"Status": health}
    return {
        "Config": {"Labels": {"shoal.task": "t1", "shoal.service": "web", "shoal.slot": "3"}},
        "State": state,
        "HostConfig": {"Memory": memory},
        "NetworkSettings": {"Ports": ports or {}},
    }


@pytest.mark.parametrize(
    "raw, state, exit_code, error",
    [
        (attrs("created"), "starting", None, ""),
        (
            attrs("created", 127, error='exec: "nope": not found'),
            "failed",
            127,
            'exec: "nope": not found',
        ),
        (attrs("running"), "running", None, ""),
        (attrs("paused"), "running", None, ""),
        (attrs("exited", 0), "exited", 0, ""),
        (attrs("exited", 3), "failed", 3, "exited with status 3"),
        (
            attrs("exited", 137, oom=True, memory=1024),
            "failed",
            137,
            "killed: out of memory (limit 1024 bytes)",
        ),
        (attrs("dead", 0, error="boom"), "failed", 0, "boom"),
    ],
)
def test_observation_states(raw, state, exit_code, error):
    seen = observation_from_attrs(raw)
    assert (seen.task_id, seen.service, seen.slot) == ("t1", "web", 3)
    assert (seen.state, seen.exit_code, seen.error) == (state, exit_code, error)


def test_observation_endpoints_and_health():
    seen = observation_from_attrs(
        attrs(
            health="healthy",
            ports={
                "80/tcp": [{"HostIp": "127.0.0.2", "HostPort": "32768"}],
                "53/udp": [{"HostIp": "127.0.0.2", "HostPort": "32769"}],
                "9000/tcp": None,
            },
        )
    )
    assert seen.endpoints == (
        Endpoint(53, "udp", "127.0.0.2", 32769),
        Endpoint(80, "tcp", "127.0.0.2", 32768),
    )
    assert seen.endpoint(80) == Endpoint(80, "tcp", "127.0.0.2", 32768)
    assert seen.health == "healthy"
    assert observation_from_attrs(attrs()).health == "unknown"
    assert observation_from_attrs(attrs(health="none")).health == "unknown"


def test_docker_times():
    assert parse_docker_time("2026-11-27T20:01:02.123456789Z") == pytest.approx(1795809662.123456)
    assert parse_docker_time("2026-11-27T20:01:02Z") == 1795809662.0
    assert parse_docker_time("2026-11-27T21:01:02.5+01:00") == 1795809662.5
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("") is None


def test_stats_as_docker_stats_computes_them():
    raw = {
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000_000_000},
            "system_cpu_usage": 20_000_000_000,
            "online_cpus": 2,
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": 2_000_000_000},
            "system_cpu_usage": 10_000_000_000,
        },
        "memory_stats": {"usage": 10_000, "limit": 64 << 20, "stats": {"cache": 4_000}},
    }
    stats = stats_from_docker("t1", raw)
    assert stats.cpu_percent == pytest.approx(20.0)
    assert (stats.memory_bytes, stats.memory_limit_bytes) == (6_000, 64 << 20)
    # The first sample of a fresh container has no previous one.
    assert stats_from_docker("t1", {"cpu_stats": {}, "precpu_stats": {}}).cpu_percent == 0.0


def test_container_options_reach_docker_and_defaults_add_nothing():
    from consensus.container import ContainerOptions, Ulimit

    plain = container_kwargs(spec(), "n")
    assert not {
        "user",
        "working_dir",
        "hostname",
        "stop_signal",
        "tty",
        "read_only",
        "sysctls",
        "extra_hosts",
        "ulimits",
        "log_config",
    } & set(plain)
    options = ContainerOptions(
        user="1000:1000",
        working_dir="/app",
        hostname="web1",
        stop_signal="SIGQUIT",
        tty=True,
        read_only=True,
        sysctls={"net.core.somaxconn": "1024"},
        extra_hosts={"db": "10.0.0.5"},
        ulimits={"nofile": Ulimit(10, 20)},
        log_driver="json-file",
        log_options={"max-size": "10m"},
    )
    kwargs = container_kwargs(spec(options=options), "n")
    assert {
        k: kwargs[k]
        for k in (
            "user",
            "working_dir",
            "hostname",
            "stop_signal",
            "tty",
            "read_only",
            "sysctls",
            "extra_hosts",
            "ulimits",
            "log_config",
        )
    } == {
        "user": "1000:1000",
        "working_dir": "/app",
        "hostname": "web1",
        "stop_signal": "SIGQUIT",
        "tty": True,
        "read_only": True,
        "sysctls": {"net.core.somaxconn": "1024"},
        "extra_hosts": {"db": "10.0.0.5"},
        "ulimits": [{"name": "nofile", "soft": 10, "hard": 20}],
        "log_config": {"type": "json-file", "config": {"max-size": "10m"}},
    }


def test_observation_reads_the_task_addresses_on_its_networks_but_not_dockers_own():
    raw = attrs()
    raw["NetworkSettings"]["Networks"] = {
        "shoal-appnet": {"IPAddress": "10.200.0.66"},
        "bridge": {"IPAddress": "172.17.0.2"},
        "shoal-db": {"IPAddress": ""},
    }
    assert observation_from_attrs(raw).networks == {"shoal-appnet": "10.200.0.66"}
