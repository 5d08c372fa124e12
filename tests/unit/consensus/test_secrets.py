"""Secrets and configs in the state machine: names, sizes, duplicates, references from
service specs, removal of one in use, and snapshots that keep them exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import consensus  # noqa: F401  (registers commands and tables)
from consensus import codec
from consensus.secrets import MAX_SIZE, SEAL_OVERHEAD, CreateBlob, DeleteBlob, blobs
from consensus.services import SpecError, parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import CreateService, UpdateService


def spec(name: str = "web", **plain):
    return parse_service_spec({"name": name, "image": "busybox", **plain})


def secret(name: str, size: int = 5) -> CreateBlob:
    # The state machine only sees sealed bytes: any bytes of the sealed length stand in.
    return CreateBlob("secret", f"id-{name}", name, size, b"\x01" * (size + SEAL_OVERHEAD), 1.0)


def config(name: str, data: bytes = b"port=80\n") -> CreateBlob:
    return CreateBlob("config", f"id-{name}", name, len(data), data, 1.0)


@pytest.fixture
def state() -> ClusterState:
    s = ClusterState()
    assert s.apply(secret("db")).ok
    assert s.apply(config("app.conf")).ok
    return s


def test_create_keeps_secrets_and_configs_apart_with_a_digest_for_configs_only(state):
    assert set(blobs(state, "secret")) == {"db"} and set(blobs(state, "config")) == {"app.conf"}
    assert blobs(state, "secret")["db"].digest == ""
    assert len(blobs(state, "config")["app.conf"].digest) == 64


@pytest.mark.parametrize(
    "cmd, code, field",
    [
        (secret("db"), 409, "name"),
        (secret("-bad"), 400, "name"),
        (secret("a/b"), 400, "name"),
        (secret(".."), 400, "name"),
        (secret("x" * 65), 400, "name"),
        (secret("big", MAX_SIZE["secret"] + 1), 400, "data"),
        (config("big", b"x" * (MAX_SIZE["config"] + 1)), 400, "data"),
        (CreateBlob("secret", "i", "short", 10, b"\x01" * 10, 1.0), 400, "data"),
        (CreateBlob("config", "i", "liar", 99, b"abc", 1.0), 400, "data"),
    ],
)
def test_create_rejects_bad_names_sizes_and_duplicates(state, cmd, code, field):
    result = state.apply(cmd)
    assert (result.ok, result.code) == (False, code)
    assert result.error.startswith(f"{field}:")


def test_sizes_at_the_limit_are_accepted():
    s = ClusterState()
    assert s.apply(secret("s", MAX_SIZE["secret"])).ok
    assert s.apply(config("c", b"x" * MAX_SIZE["config"])).ok


def test_a_service_may_only_name_existing_secrets_and_configs(state):
    missing = state.apply(CreateService("s1", spec(secrets=["db", "nope"]), 1.0))
    assert (missing.ok, missing.code) == (False, 400)
    assert missing.error.startswith("secrets[1].source:") and "'nope'" in missing.error
    missing = state.apply(CreateService("s1", spec(configs=["nope"]), 1.0))
    assert missing.error.startswith("configs[0].source:")
    assert state.apply(CreateService("s1", spec(secrets=["db"], configs=["app.conf"]), 1.0)).ok
    update = state.apply(UpdateService(spec(secrets=["db", "gone"]), 2.0))
    assert (update.ok, update.code) == (False, 400) and update.error.startswith(
        "secrets[1].source:"
    )


def test_removing_one_in_use_names_the_services(state):
    assert state.apply(CreateService("s1", spec("web", secrets=["db"]), 1.0)).ok
    assert state.apply(CreateService("s2", spec("api", secrets=["db"]), 1.0)).ok
    refused = state.apply(DeleteBlob("secret", "db"))
    assert (refused.ok, refused.code) == (False, 409)
    assert "api, web" in refused.error
    # A config of the same name is another object.
    assert state.apply(DeleteBlob("config", "app.conf")).ok
    assert state.apply(UpdateService(spec("web"), 2.0)).ok
    assert state.apply(UpdateService(spec("api"), 2.0)).ok
    assert state.apply(DeleteBlob("secret", "db")).ok
    gone = state.apply(DeleteBlob("secret", "db"))
    assert (gone.ok, gone.code) == (False, 404)


def test_snapshot_and_log_round_trip_keep_them(state):
    assert state.apply(
        CreateService("s1", spec(secrets=[{"source": "db", "target": "pw", "mode": 0o400}]), 1.0)
    ).ok
    restored = ClusterState.from_msgpack(state.to_msgpack())
    assert restored.tables == state.tables
    cmd = secret("other")
    assert codec.decode(codec.encode(cmd, "r1")).command == cmd


@pytest.mark.parametrize(
    "plain, field",
    [
        ({"secrets": [{"source": ""}]}, "secrets[0].source"),
        ({"secrets": ["a", {"source": "b", "target": "a"}]}, "secrets[1].target"),
        (
            {"configs": [{"source": "a", "target": "/run/secrets/x"}], "secrets": ["x"]},
            "configs[0].target",
        ),
        ({"configs": [{"source": "c", "target": "/etc/../x"}]}, "configs[0].target"),
        ({"configs": [{"source": "c", "target": "/etc/"}]}, "configs[0].target"),
        ({"secrets": [{"source": "c", "mode": 0o1777}]}, "secrets[0].mode"),
    ],
)
def test_spec_file_refs_are_checked(plain, field):
    with pytest.raises(SpecError) as caught:
        spec(**plain)
    assert caught.value.field == field


def test_targets_default_as_docker_does():
    s = spec(
        secrets=["db", {"source": "k", "target": "keys/k"}, {"source": "t", "target": "/etc/t"}],
        configs=["app.conf", {"source": "x", "target": "etc/x"}],
    )
    assert [r.path("/run/secrets") for r in s.secrets] == [
        "/run/secrets/db",
        "/run/secrets/keys/k",
        "/etc/t",
    ]
    assert [r.path("/") for r in s.configs] == ["/app.conf", "/etc/x"]


@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=6))
def test_in_use_check_follows_every_current_reference(names):
    s = ClusterState()
    for name in "abc":
        assert s.apply(secret(name)).ok
    assert s.apply(CreateService("s1", spec(secrets=sorted(set(names))), 1.0)).ok
    for name in "abc":
        removed = s.apply(DeleteBlob("secret", name))
        assert removed.ok == (name not in names)
    assert sorted(blobs(s, "secret")) == sorted(set(names))
