"""Task + service spec -> RunSpec, and driver observations -> task reports (tables)."""

from __future__ import annotations

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus.services import parse_service_spec
from consensus.tasks import Endpoint as TaskEndpoint
from consensus.tasks import PortBinding, Task, TaskReport
from node.agent.translate import VANISHED, TranslateError, observed, run_ports, run_spec
from node.health import HealthCheck
from node.overlay.view import Seat
from node.runtime.model import Endpoint, PortSpec, TaskObservation


def spec(**plain):
    return parse_service_spec({"name": "web", "image": "busybox", **plain})


def task(**fields) -> Task:
    return Task(
        **{
            "id": "t1",
            "service_id": "s1",
            "service": "web",
            "slot": 3,
            "spec_version": 1,
            "node_id": "n1",
            "state": "assigned",
            **fields,
        }
    )


@pytest.mark.parametrize(
    "ports, expected",
    [
        ([], ()),
        (["8080:80"], (PortSpec(80, "tcp", 0),)),  # ingress: the load balancer holds 8080
        ([{"target": 80, "published": 8080, "mode": "host"}], (PortSpec(80, "tcp", 8080),)),
        ([{"target": 80, "mode": "host"}], (PortSpec(80, "tcp", 0),)),
        (["53:53/udp", "53:53/tcp"], (PortSpec(53, "udp", 0), PortSpec(53, "tcp", 0))),
        # One target published both ways runs once, on the fixed port, where it was first named.
        (
            ["8080:80", "9000:9000", {"target": 80, "published": 8081, "mode": "host"}],
            (PortSpec(80, "tcp", 8081), PortSpec(9000, "tcp", 0)),
        ),
        (
            [{"target": 80, "published": 8081, "mode": "host"}, "8080:80"],
            (PortSpec(80, "tcp", 8081),),
        ),
    ],
)
def test_ports(ports, expected):
    assert run_ports(spec(ports=ports).ports) == expected


def test_run_spec_carries_the_whole_spec():
    s = spec(
        image="busybox:1",
        command="httpd -f",
        args=["-p", "80"],
        env=["A=1", "B=two"],
        ports=["8080:80"],
        labels={"team": "web"},
        stop_grace_period="3s",
        resources={"limits": {"cpus": "0.5", "memory": "64M"}, "reservations": {"memory": "32M"}},
    )
    run = run_spec(task(), s, "127.0.0.5")
    assert (run.task_id, run.service, run.slot, run.image) == ("t1", "web", 3, "busybox:1")
    assert (run.command, run.args) == (("httpd", "-f"), ("-p", "80"))
    t = task()
    assert run.env == {
        "A": "1",
        "B": "two",
        "SHOAL_SERVICE": "web",
        "SHOAL_TASK_ID": "t1",
        "SHOAL_TASK_SLOT": "3",
        "SHOAL_NODE_ID": t.node_id or "",
    }
    # The spec's own value wins over the task's identity.
    assert run_spec(t, spec(env=["SHOAL_TASK_SLOT=x"]), "h").env["SHOAL_TASK_SLOT"] == "x"
    assert run.ports == (PortSpec(80),)
    assert (run.cpu_millis, run.memory_bytes) == (500, 64 << 20)
    assert run.labels == {"team": "web"}
    assert (run.stop_grace, run.advertise_address) == (3.0, "127.0.0.5")
    assert run.healthcheck is None


@pytest.mark.parametrize(
    "health, expected",
    [
        ({"kind": "none"}, None),
        (
            {
                "kind": "http",
                "path": "/ready",
                "port": 80,
                "interval": "2s",
                "timeout": "1s",
                "retries": 4,
                "start_period": "5s",
            },
            HealthCheck(
                "http",
                port=80,
                path="/ready",
                interval=2.0,
                timeout=1.0,
                retries=4,
                start_period=5.0,
            ),
        ),
        # Port 0 is the first declared port.
        (
            {"kind": "tcp", "interval": 1, "timeout": 1},
            HealthCheck("tcp", port=80, interval=1.0, timeout=1.0),
        ),
        (
            {"kind": "cmd", "command": "test -f /ok", "interval": 3, "timeout": 2, "retries": 1},
            HealthCheck(
                "cmd",
                command=("/bin/sh", "-c", "test -f /ok"),
                interval=3.0,
                timeout=2.0,
                retries=1,
            ),
        ),
    ],
)
def test_health_checks(health, expected):
    assert run_spec(task(), spec(ports=["80"], health=health), "127.0.0.1").healthcheck == expected


def test_a_global_task_runs_in_slot_zero():
    assert run_spec(task(slot=0), spec(mode="global"), "127.0.0.1").slot == 0


@pytest.mark.parametrize(
    "s, field",
    [
        (None, "spec_version"),
        (spec(labels={"shoal.task": "mine"}), "labels.shoal.task"),
    ],
)
def test_tasks_that_cannot_run_name_the_field(s, field):
    with pytest.raises(TranslateError) as err:
        run_spec(task(), s, "127.0.0.1")
    assert str(err.value).startswith(field + ":")


ENDPOINTS = (Endpoint(80, "tcp", "0.0.0.0", 32768), Endpoint(53, "udp", "127.0.0.9", 40000))
BOUND = TaskEndpoint("127.0.0.9", (PortBinding(80, 32768, "tcp"), PortBinding(53, 40000, "udp")))


@pytest.mark.parametrize(
    "seen, expected",
    [
        (
            TaskObservation("t1", "running", endpoints=ENDPOINTS),
            TaskReport("t1", "running", endpoint=BOUND),
        ),
        (
            TaskObservation("t1", "running", health="healthy"),
            TaskReport("t1", "running", endpoint=TaskEndpoint("127.0.0.9"), health="healthy"),
        ),
        (
            TaskObservation("t1", "starting", health="starting"),
            TaskReport("t1", "starting", endpoint=TaskEndpoint("127.0.0.9"), health="starting"),
        ),
        (TaskObservation("t1", "exited", exit_code=0), TaskReport("t1", "complete", exit_code=0)),
        (
            TaskObservation("t1", "failed", exit_code=137, error="killed by SIGKILL"),
            TaskReport("t1", "failed", error="killed by SIGKILL", exit_code=137),
        ),
        (
            TaskObservation("t1", "failed", error="image 'x' cannot be pulled"),
            TaskReport("t1", "failed", error="image 'x' cannot be pulled"),
        ),
        (
            TaskObservation("t1", "missing", error="no such task on this node"),
            TaskReport("t1", "failed", error=VANISHED),
        ),
    ],
)
def test_observations_become_reports(seen, expected):
    assert observed(seen, "127.0.0.9") == expected


SEATS = {
    "appnet": Seat("appnet", "shoal-appnet", "10.200.0.65"),
    "db": Seat("db", "shoal-db", "10.200.16.65"),
}


def test_a_task_on_networks_joins_them_and_uses_this_nodes_resolver_on_the_first():
    run = run_spec(task(), spec(networks=["db", "appnet"]), "10.1.0.2", ("10.1.0.2",), SEATS)
    assert run.networks == ("shoal-db", "shoal-appnet")
    assert (run.dns_servers, run.dns_search) == (("10.200.16.65",), ("db",))
    plain = run_spec(task(), spec(), "10.1.0.2", ("10.1.0.2",), SEATS)
    assert (plain.networks, plain.dns_servers, plain.dns_search) == ((), ("10.1.0.2",), ("shoal",))


def test_a_node_without_the_overlay_runs_a_networked_task_on_the_runtimes_default_network():
    run = run_spec(task(), spec(networks=["appnet"], ports=["80"]), "10.1.0.2", ("10.1.0.2",), None)
    assert (run.networks, run.dns_servers, run.ports) == (
        (),
        ("10.1.0.2",),
        (PortSpec(80, "tcp", 0),),
    )


def test_on_a_network_only_host_mode_ports_bind_a_host_port():
    on_net = run_spec(
        task(),
        spec(
            networks=["appnet"],
            ports=["80", "8080:81", {"target": 82, "published": 9000, "mode": "host"}],
        ),
        "10.1.0.2",
        (),
        SEATS,
    )
    assert on_net.ports == (PortSpec(82, "tcp", 9000),), "the mesh reaches 81 on the network"
    off_net = run_spec(task(), spec(ports=["80"]), "10.1.0.2", (), SEATS)
    assert off_net.ports == (PortSpec(80, "tcp", 0),)


def test_a_network_this_node_has_no_place_in_names_the_field():
    with pytest.raises(TranslateError, match=r"networks\[1\]: .*'other'.*--overlay"):
        run_spec(task(), spec(networks=["appnet", "other"]), "10.1.0.2", (), SEATS)


def test_reports_carry_the_task_addresses_on_its_overlay_networks():
    seen = TaskObservation(
        "t1", "running", "web", 3, networks={"shoal-appnet": "10.200.0.66", "mine": "10.9.0.2"}
    )
    assert observed(seen, "10.1.0.2").endpoint == TaskEndpoint(
        "10.1.0.2", (), {"appnet": "10.200.0.66"}
    )


def test_a_health_check_on_port_0_probes_the_first_declared_port():
    run = run_spec(task(), spec(ports=["9000", "8080:80"], health={"kind": "http"}), "10.1.0.2")
    assert run.healthcheck.port == 9000
    named = run_spec(task(), spec(ports=["9000"], health={"kind": "tcp", "port": 7000}), "10.1.0.2")
    assert named.healthcheck.port == 7000
