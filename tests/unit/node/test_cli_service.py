"""`shoal service` flags into plain specs and patches, checked by the real spec parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.services import SpecError, merge_spec, parse_service_spec
from consensus.wire import to_plain
from node.cli.main import build_parser
from node.cli.service import create_body, scale_problems, update_patch
from node.cli.tasks import task_error


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def create(*flags: str, image: str = "busybox", command: tuple[str, ...] = ()):
    return parse_service_spec(
        create_body(parse("service", "create", "--name", "web", *flags, image, *command))
    )


def test_publish_asks_the_routing_mesh_for_a_proxy_header_and_an_idle_timeout():
    spec = create(
        "-p",
        "published=8080,target=80,proxy-protocol,idle-timeout=90s",
        "-p",
        "published=8081,target=81,proxy-protocol=false",
        "-p",
        "published=8082,target=82,proxy-protocol=v1",
        "-p",
        "published=8083,target=83,proxy-protocol=v2",
    )
    assert [(p.proxy_protocol, p.idle_timeout) for p in spec.ports] == [
        ("v2", 90.0),
        ("", 0.0),
        ("v1", 0.0),
        ("v2", 0.0),
    ]


def test_an_unknown_proxy_protocol_version_is_refused_naming_the_field():
    with pytest.raises(SpecError) as info:
        create("-p", "published=8080,target=80,proxy-protocol=v3")
    assert info.value.field == "ports[0].proxy_protocol"


def test_docker_style_flags_make_the_spec_they_say():
    spec = create(
        "--replicas",
        "3",
        "-p",
        "8080:80",
        "--publish",
        "mode=host,published=8443,target=443",
        "--env",
        "MODE=prod",
        "-e",
        "EMPTY=",
        "--label",
        "team=web",
        "--constraint",
        "node.labels.zone==a",
        "--placement-pref",
        "spread=node.labels.zone",
        "--reserve-cpu",
        "0.5",
        "--reserve-memory",
        "128M",
        "--limit-cpu",
        "1",
        "--limit-memory",
        "256M",
        "--stop-grace-period",
        "20s",
        command=("httpd", "-f", "-p", "80"),
    )
    assert spec.replicas == 3 and spec.image == "busybox"
    assert spec.args == ("httpd", "-f", "-p", "80") and spec.command == ()
    assert [(p.published, p.target, p.mode) for p in spec.ports] == [
        (8080, 80, "ingress"),
        (8443, 443, "host"),
    ]
    assert spec.env == {"MODE": "prod", "EMPTY": ""} and spec.labels == {"team": "web"}
    assert [str(c) for c in spec.constraints] == ["node.labels.zone==a"]
    assert spec.preferences[0].label == "zone"
    assert spec.resources.reservations.cpu_millis == 500
    assert spec.resources.reservations.memory_bytes == 128 << 20
    assert (spec.resources.limits.cpu_millis, spec.resources.limits.memory_bytes) == (
        1000,
        256 << 20,
    )
    assert spec.stop_grace_period == 20.0


def test_health_restart_and_update_flags():
    spec = create(
        "--health-cmd",
        "wget -q localhost",
        "--health-interval",
        "5s",
        "--health-retries",
        "4",
        "--health-timeout",
        "2s",
        "--health-start-period",
        "1s",
        "--restart-condition",
        "on-failure",
        "--restart-delay",
        "1s",
        "--restart-max-attempts",
        "3",
        "--update-parallelism",
        "2",
        "--update-delay",
        "10s",
        "--update-order",
        "start-first",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "30s",
        "--rollback-parallelism",
        "0",
        "--mode",
        "global",
    )
    h = spec.health
    assert (h.kind, h.command) == ("cmd", ("/bin/sh", "-c", "wget -q localhost"))
    assert (h.interval, h.timeout, h.retries, h.start_period) == (5.0, 2.0, 4, 1.0)
    assert (spec.restart.condition, spec.restart.delay, spec.restart.max_attempts) == (
        "on-failure",
        1.0,
        3,
    )
    u = spec.update
    assert (u.parallelism, u.delay, u.order, u.failure_action, u.monitor) == (
        2,
        10.0,
        "start-first",
        "rollback",
        30.0,
    )
    assert spec.rollback.parallelism == 0 and spec.mode == "global"


def test_http_tcp_health_mounts_secrets_and_entrypoint():
    http = create("-p", "80", "--health-http", "/ready", "--health-port", "8080")
    assert (http.health.kind, http.health.path, http.health.port) == ("http", "/ready", 8080)
    tcp = create(
        "--health-tcp",
        "5432",
        "--mount",
        "type=bind,src=/srv,dst=/data,readonly",
        "--mount",
        "source=cache,target=/cache",
        "--secret",
        "db-password",
        "--entrypoint",
        "/bin/sh -c",
    )
    assert (tcp.health.kind, tcp.health.port) == ("tcp", 5432)
    assert [(v.type, v.source, v.target, v.read_only) for v in tcp.volumes] == [
        ("bind", "/srv", "/data", True),
        ("volume", "cache", "/cache", False),
    ]
    assert tcp.secrets[0].source == "db-password" and tcp.command == ("/bin/sh", "-c")


def test_an_option_after_the_image_belongs_to_the_command():
    spec = create(command=("sh", "-c", "--replicas 3"))
    assert spec.args == ("sh", "-c", "--replicas 3") and spec.replicas == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (("--env", "NOVALUE"), "KEY=VALUE"),
        (("--label", "=x"), "KEY=VALUE"),
        (("--replicas", "three"), "invalid int"),
        (("--publish", "mode=host,colour=red"), "unknown key"),
        (("--publish", "mode=host,target"), "KEY=VALUE"),
        (("--mount", "type=bind,src"), "KEY=VALUE"),
        (("--restart-condition", "sometimes"), "invalid choice"),
        (("--health-cmd", "true", "--health-http", "/"), "not allowed with"),
        (("--mode", "daemon"), "invalid choice"),
    ],
)
def test_flags_that_cannot_be_written_down_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("service", "create", "--name", "web", *argv, "busybox")
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_value_the_parser_accepts_is_left_for_the_server_to_reject():
    body = create_body(
        parse(
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "-1",
            "--reserve-memory",
            "12XB",
            "busybox",
        )
    )
    assert body["replicas"] == -1
    with pytest.raises(Exception) as exc_info:
        parse_service_spec(body)
    assert exc_info.value.field == "resources.reservations.memory"


CURRENT = parse_service_spec(
    {
        "name": "web",
        "image": "busybox:1",
        "replicas": 2,
        "env": {"A": "1", "B": "2"},
        "labels": {"team": "web"},
        "constraints": ["node.labels.zone==a", "node.role==voter"],
        "ports": ["8080:80", "9090:90"],
        "resources": {"reservations": {"cpu": "250m", "memory": "64M"}},
        "health": {"kind": "cmd", "command": "true", "retries": 2},
        "restart": {"delay": "3s"},
    }
)


def update(*flags: str):
    patch = update_patch(to_plain(CURRENT), parse("service", "update", "web", *flags))
    return patch, merge_spec(CURRENT, patch)


def test_update_adds_and_removes_list_and_map_items():
    patch, spec = update(
        "--env-add",
        "C=3",
        "--env-rm",
        "A",
        "--label-rm",
        "team",
        "--constraint-rm",
        "node.labels.zone == a",
        "--constraint-add",
        "node.labels.disk==ssd",
        "--publish-rm",
        "80",
        "--publish-add",
        "7070:70",
    )
    assert set(patch) == {"env", "labels", "constraints", "ports"}
    assert spec.env == {"B": "2", "C": "3"} and spec.labels == {}
    assert [str(c) for c in spec.constraints] == ["node.role==voter", "node.labels.disk==ssd"]
    assert [(p.published, p.target) for p in spec.ports] == [(9090, 90), (7070, 70)]
    assert spec.image == CURRENT.image and spec.replicas == CURRENT.replicas


def test_update_changes_one_nested_value_and_keeps_its_siblings():
    patch, spec = update(
        "--image",
        "busybox:2",
        "--replicas",
        "5",
        "--reserve-memory",
        "1G",
        "--health-retries",
        "7",
        "--restart-condition",
        "none",
        "--args",
        "httpd -f",
    )
    assert spec.image == "busybox:2" and spec.replicas == 5 and spec.args == ("httpd", "-f")
    assert spec.resources.reservations == type(spec.resources.reservations)(250, 1 << 30)
    assert (spec.health.kind, spec.health.retries) == ("cmd", 7)
    assert spec.health.command == CURRENT.health.command
    assert (spec.restart.condition, spec.restart.delay) == ("none", 3.0)
    assert "env" not in patch and "ports" not in patch


def test_update_switches_the_kind_of_health_check():
    _, spec = update("--health-http", "/ok", "--health-port", "80")
    assert (spec.health.kind, spec.health.path, spec.health.port) == ("http", "/ok", 80)
    _, spec = update("--no-healthcheck")
    assert spec.health.kind == "none"


def test_update_without_flags_is_an_empty_patch():
    assert update_patch(to_plain(CURRENT), parse("service", "update", "web")) == {}


@given(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), st.integers(0, 10_000))
def test_scale_reads_name_equals_count(name, count):
    assert parse("service", "scale", f"{name}={count}", "other=1").targets == [
        (name, count),
        ("other", 1),
    ]


@pytest.mark.parametrize("target", ["web", "web=", "web=many", "=3"])
def test_scale_rejects_anything_but_name_equals_count(target):
    with pytest.raises(SystemExit) as exit_info:
        parse("service", "scale", target)
    assert exit_info.value.code == 2


def test_apply_needs_a_file():
    assert parse("apply", "-f", "stack.yml", "--strict").strict
    with pytest.raises(SystemExit):
        parse("apply")


def test_apply_flags_and_stack_commands():
    args = parse("apply", "-f", "stack.yml", "--dry-run", "--prune", "--stack", "shop")
    assert (args.dry_run, args.prune, args.stack) == (True, True, "shop")
    assert parse("stack", "ls").command == "ls"
    assert parse("stack", "ps", "shop").name == "shop"
    assert parse("stack", "rm", "a", "b").names == ["a", "b"]


def test_the_error_column_shows_errors_and_pending_reasons():
    base = {"error": "", "pending_reason": ""}
    assert task_error(base) == ""
    assert task_error({**base, "error": "exit status 1"}) == "exit status 1"
    assert (
        task_error({**base, "pending_reason": "insufficient memory on 3 nodes"})
        == "pending: insufficient memory on 3 nodes"
    )
    # A health check's multi-line output keeps a table's rows one line each.
    meter = "exit status 7:   % Total    % Received\n  0     0    0     0\ncurl: (7) refused\n"
    assert task_error({**base, "error": meter}) == "exit status 7:   % Total    % Received ..."


def _listed(name: str, **spec) -> dict:
    """A service as `GET /v1/services` lists it."""
    return {
        "name": name,
        "id": f"id-{name}",
        "spec": to_plain(parse_service_spec({"name": name, "image": "busybox", **spec})),
    }


@pytest.mark.parametrize(
    "targets, unknown, words",
    [
        ([("web", 3), ("nosuch", 2)], True, "no such service 'nosuch'"),
        ([("web", 3), ("agent", 2)], False, "agent is a global service"),
        ([("web", 3), ("api", -1)], False, "api: replicas: must be between 0"),
        ([("web", 3), ("id-web", 2)], False, "web is named twice"),
    ],
)
def test_scale_names_every_target_that_cannot_be_scaled(targets, unknown, words):
    listed = [_listed("web"), _listed("api"), _listed("agent", mode="global")]
    missing, wrong = scale_problems(listed, targets)
    assert words in " ".join(missing if unknown else wrong)
    assert not (wrong if unknown else missing)


def test_scale_targets_that_can_all_be_scaled_have_no_problem():
    assert scale_problems([_listed("web"), _listed("api")], [("web", 0), ("id-api", 5)]) == ([], [])
