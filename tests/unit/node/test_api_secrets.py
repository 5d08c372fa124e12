"""The secrets API's pure parts: request checks naming the field, what listings show (never
a secret's content), who may have a secret's content, and the files a task gets."""

from __future__ import annotations

import base64
import dataclasses

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus.secrets import MAX_SIZE, SEAL_OVERHEAD, CreateBlob, blobs
from consensus.services import parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import CreateService, Task, UpdateService, services, tasks
from node.agent.translate import run_spec
from node.api_secrets import blob_json, delivery_problem, parse_create
from node.http_util import HttpError
from node.runtime.model import TaskFile


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    "kind, body, field, words",
    [
        ("secret", [], "body", "must be an object"),
        ("secret", {"name": "db", "data": b64(b"x"), "extra": 1}, "extra", "unknown field"),
        ("secret", {"data": b64(b"x")}, "name", "not a valid name"),
        ("secret", {"name": "a b", "data": b64(b"x")}, "name", "not a valid name"),
        ("secret", {"name": "db"}, "data", "base64"),
        ("secret", {"name": "db", "data": "%%%"}, "data", "not valid base64"),
        (
            "secret",
            {"name": "db", "data": b64(b"x" * (MAX_SIZE["secret"] + 1))},
            "data",
            "at most 500 KiB",
        ),
        (
            "config",
            {"name": "db", "data": b64(b"x" * (MAX_SIZE["config"] + 1))},
            "data",
            "at most 1000 KiB",
        ),
    ],
)
def test_bad_create_requests_name_the_field(kind, body, field, words):
    with pytest.raises(HttpError) as caught:
        parse_create(kind, body)
    assert (caught.value.status, caught.value.field) == (400, field)
    assert words in caught.value.message


def test_good_create_request():
    assert parse_create("config", {"name": "app.conf", "data": b64(b"\x00\xff")}) == (
        "app.conf",
        b"\x00\xff",
    )


@pytest.fixture
def state() -> ClusterState:
    s = ClusterState()
    assert s.apply(CreateBlob("secret", "s1", "db", 4, b"\x07" * (4 + SEAL_OVERHEAD), 1.0)).ok
    assert s.apply(CreateBlob("config", "c1", "app", 3, b"a=1", 1.0)).ok
    spec = parse_service_spec(
        {"name": "web", "image": "busybox", "secrets": ["db"], "configs": ["app"]}
    )
    assert s.apply(CreateService("svc", spec, 1.0)).ok
    tasks(s)["t1"] = Task("t1", "svc", "web", 1, 1, node_id="n1", state="running")
    return s


def test_listings_never_show_a_secret_but_show_a_config(state):
    shown = blob_json(blobs(state, "secret")["db"], ["web"], with_data=True)
    assert set(shown) == {"id", "name", "kind", "size", "created_at", "updated_at", "services"}
    config = blob_json(blobs(state, "config")["app"], [], with_data=True)
    assert base64.b64decode(config["data"]) == b"a=1" and config["digest"].startswith("sha256:")


def test_only_the_assigned_node_of_a_task_that_uses_it_gets_it(state):
    assert delivery_problem(state, "secret", "db", "t1", "n1") is None
    assert delivery_problem(state, "config", "app", "t1", "n1") is None
    assert "not assigned to node 'n2'" in delivery_problem(state, "secret", "db", "t1", "n2")
    assert "not assigned" in delivery_problem(state, "secret", "db", "nope", "n1")
    assert "does not use config 'db'" in delivery_problem(state, "config", "db", "t1", "n1")
    tasks(state)["t1"] = dataclasses.replace(tasks(state)["t1"], desired="shutdown")
    assert "not meant to run" in delivery_problem(state, "secret", "db", "t1", "n1")


def test_a_task_gets_what_its_own_spec_version_names(state):
    spec = dataclasses.replace(services(state)["web"].spec, secrets=())
    assert state.apply(UpdateService(spec, 2.0)).ok
    assert delivery_problem(state, "secret", "db", "t1", "n1") is None  # t1 runs version 1
    tasks(state)["t2"] = Task("t2", "svc", "web", 2, 2, node_id="n1", state="assigned")
    assert "does not use" in delivery_problem(state, "secret", "db", "t2", "n1")


def test_run_spec_lists_the_files_without_content(state):
    service = services(state)["web"]
    run = run_spec(tasks(state)["t1"], service.spec_at(1), "127.0.0.1")
    assert run.files == (
        TaskFile("secret", "db", "/run/secrets/db"),
        TaskFile("config", "app", "/app"),
    )
